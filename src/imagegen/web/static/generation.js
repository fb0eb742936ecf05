// A generation's own page: /generations/{id}, followed live while it runs.
import { api, describeError } from "./api.js";
import { JobView } from "./job.js";
import { KEY_CHANGED, mountKeyPanel } from "./key.js";
import { h } from "./render.js";

const id = decodeURIComponent(location.pathname.replace(/^\/generations\//, ""));
const view = new JobView(document.getElementById("job"), { title: "State", permalink: false });

async function load() {
  document.getElementById("title").replaceChildren("Generation ", h("code", { class: "id" }, id));
  document.title = `${id} · imagegen`;
  let generation;
  try {
    generation = await api(`/api/v1/generations/${encodeURIComponent(id)}`);
  } catch (error) {
    document.getElementById("page-error").textContent = describeError(error);
    return;
  }
  view.track(generation);
}

mountKeyPanel();
load();
window.addEventListener(KEY_CHANGED, () => load());
