// The history page: every generation, newest first, a page at a time (the API's cursor).
import { api, describeError } from "./api.js";
import { KEY_CHANGED, mountKeyPanel } from "./key.js";
import { h, servedHere, stateBadge, when } from "./render.js";

const params = new URLSearchParams(location.search);
const limit = params.get("limit");
const cursor = params.get("cursor");

function thumbnail(generation) {
  const image = (generation.images || []).find((candidate) => servedHere(candidate.url));
  const target = `/generations/${encodeURIComponent(generation.id)}`;
  const content = image
    ? h("img", { src: image.url, alt: "", loading: "lazy", width: 96, height: 96 })
    : h("span", { class: "no-image" }, generation.status === "succeeded" ? "no image" : "—");
  return h("a", { href: target, class: "thumb", tabindex: "-1", "aria-hidden": "true" }, content);
}

function item(generation) {
  const target = `/generations/${encodeURIComponent(generation.id)}`;
  const count = (generation.images || []).length;
  return h("li", { class: "history-item", "data-id": generation.id },
    thumbnail(generation),
    h("div", { class: "history-text" },
      h("a", { href: target, class: "history-prompt" }, generation.prompt),
      h("p", { class: "meta" }, stateBadge(generation.status), " ",
        [generation.model, `${generation.width}×${generation.height}`,
          `${count}/${generation.num_images} image${generation.num_images === 1 ? "" : "s"}`,
          when(generation.created_at)].join(" · ")),
      generation.error ? h("p", { class: "history-error" }, generation.error) : null));
}

async function load() {
  const query = new URLSearchParams();
  if (limit) query.set("limit", limit);
  if (cursor) query.set("cursor", cursor);
  let page;
  try {
    page = await api(`/api/v1/generations?${query}`);
  } catch (error) {
    document.getElementById("page-error").textContent = describeError(error);
    return;
  }
  document.getElementById("history").replaceChildren(...page.data.map(item));
  document.getElementById("history-empty").hidden = page.data.length > 0 || Boolean(cursor);
  document.getElementById("newest").hidden = !cursor;
  const older = document.getElementById("older");
  older.hidden = !page.next_cursor;
  if (page.next_cursor) {
    const next = new URLSearchParams({ cursor: page.next_cursor });
    if (limit) next.set("limit", limit);
    older.href = `/history?${next}`;
  }
}

mountKeyPanel();
load();
window.addEventListener(KEY_CHANGED, () => load());
