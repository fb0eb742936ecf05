// Building the page from a generation, with DOM nodes (never HTML strings: prompts are text).

/** h("a", {href: "/"}, "text", child): an element with attributes and children. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

export function seconds(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  return ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function bytes(size) {
  if (!Number.isFinite(size)) return "";
  return size < 1024 * 1024 ? `${Math.round(size / 1024)} KB` : `${(size / 1048576).toFixed(1)} MB`;
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** A cost as the API gives it: a number (US dollars), a string, or {amount, currency}. */
export function cost(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return `$${value.toFixed(value < 0.01 ? 4 : 3)}`;
  if (typeof value === "string") return value;
  if (typeof value === "object") {
    const amount = value.amount ?? value.total ?? value.usd;
    if (typeof amount === "number") {
      const currency = value.currency || "USD";
      return currency === "USD" ? `$${amount.toFixed(amount < 0.01 ? 4 : 3)}` : `${amount} ${currency}`;
    }
    return JSON.stringify(value);
  }
  return String(value);
}

/** How long it took: end to end, and of that running at the provider. */
export function duration(generation) {
  if (!generation.completed_at) return "";
  const total = Date.parse(generation.completed_at) - Date.parse(generation.created_at);
  const running = generation.started_at
    ? Date.parse(generation.completed_at) - Date.parse(generation.started_at)
    : NaN;
  const parts = [seconds(total)];
  if (Number.isFinite(running)) parts.push(`(${seconds(running)} running)`);
  return parts.join(" ");
}

export function stateBadge(status) {
  return h("span", { class: `state state-${status}` }, status);
}

function filename(url, index, generation) {
  const extension = (url.split("?")[0].match(/\.(\w+)$/) || [, "png"])[1];
  return `${generation.id}-${index + 1}.${extension}`;
}

/** Whether imagegen itself serves this URL (the page loads nothing from other hosts). */
export function servedHere(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

function elsewhere(image, index) {
  return h("figure", { class: "image elsewhere" },
    h("a", { href: image.url, rel: "noreferrer" }, `Image ${index + 1} at the provider`),
    h("span", { class: "meta" }, "not stored by imagegen, so not shown here"));
}

export function imagesView(generation) {
  const images = generation.images || [];
  const total = images.length;
  return h("div", { class: "images" }, images.map((image, index) => !servedHere(image.url)
    ? elsewhere(image, index)
    : h("figure", { class: "image" },
      h("a", { href: image.url, class: "image-link" },
        h("img", {
          src: image.url,
          alt: `Image ${index + 1} of ${total}: ${generation.prompt}`,
          width: image.width, height: image.height, loading: "lazy",
        })),
      h("figcaption", {},
        h("a", { href: image.url, download: filename(image.url, index, generation), class: "download" },
          `Download image ${index + 1}`),
        h("span", { class: "meta" },
          [image.width && `${image.width}×${image.height}`, image.content_type, bytes(image.size_bytes)]
            .filter(Boolean).join(" · "))))));
}

function fact(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

export function factsView(generation) {
  const price = cost(generation.cost);
  return h("dl", { class: "facts" },
    fact("Model", h("code", {}, generation.model)),
    fact("Provider", generation.provider),
    fact("Prompt", generation.prompt),
    fact("Asked for", `${generation.num_images} × ${generation.width}×${generation.height}`),
    generation.images_missing ? fact("Missing", `${generation.images_missing} image(s) not returned`) : null,
    fact("Created", when(generation.created_at)),
    generation.completed_at ? fact("Took", h("span", { class: "took" }, duration(generation))) : null,
    price ? fact("Cost", h("span", { class: "cost" }, price)) : null,
    fact("Id", h("code", {}, generation.id)));
}

export function inputsView(generation) {
  const predictions = generation.predictions || [];
  if (!predictions.length) return null;
  return h("details", { class: "inputs", open: true },
    h("summary", {}, "Exact inputs the provider received"),
    predictions.map((prediction) =>
      h("div", { class: "prediction" },
        h("p", {}, "Prediction ", h("code", {}, prediction.id),
          ` (${prediction.images_requested} image${prediction.images_requested === 1 ? "" : "s"})`),
        h("pre", { class: "inputs-json" }, JSON.stringify(prediction.inputs, null, 2)))));
}
