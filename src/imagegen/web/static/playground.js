// The playground form: creates an async generation and shows it as it runs.
import { ApiError, api, describeError } from "./api.js";
import { JobView } from "./job.js";
import { KEY_CHANGED, mountKeyPanel } from "./key.js";
import { h } from "./render.js";

const form = document.getElementById("generate-form");
const formError = document.getElementById("form-error");
const submit = document.getElementById("generate");
const size = document.getElementById("size");
const width = form.elements.width;
const height = form.elements.height;
const model = form.elements.model;
const job = new JobView(document.getElementById("job"));

function clearErrors() {
  formError.textContent = "";
  for (const box of form.querySelectorAll("[data-error-for]")) {
    box.textContent = "";
    form.elements[box.dataset.errorFor].removeAttribute("aria-invalid");
  }
}

/** The form field an API error names: "width: must be ..." is width's; an unknown model, model's. */
function fieldOf(error) {
  const named = /^([A-Za-z_][\w]*)[.:]/.exec(error.message);
  if (named && form.querySelector(`[data-error-for="${named[1]}"]`)) return named[1];
  if (error.status === 404 && /model/i.test(error.message)) return "model";
  return null;
}

function showError(error) {
  const field = error instanceof ApiError ? fieldOf(error) : null;
  if (field) {
    const box = form.querySelector(`[data-error-for="${field}"]`);
    box.textContent = `${error.status}: ${error.message}`;
    form.elements[field].setAttribute("aria-invalid", "true");
    form.elements[field].focus();
  } else {
    formError.textContent = describeError(error);
  }
}

function number(name) {
  const raw = form.elements[name].value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw;
}

function requestBody() {
  const body = {
    model: model.value.trim(),
    prompt: form.elements.prompt.value,
    num_images: number("num_images"),
    width: number("width"),
    height: number("height"),
    seed: number("seed"),
  };
  const negative = form.elements.negative_prompt.value.trim();
  if (negative) body.negative_prompt = negative;
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return body;
}

async function generate(event) {
  event.preventDefault();
  clearErrors();
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  let generation;
  try {
    generation = await api("/api/v1/images/generate", {
      method: "POST", body: requestBody(), prefer: "respond-async",
    });
  } catch (error) {
    showError(error);
    return;
  } finally {
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
  }
  job.track(generation);
}

function syncPreset() {
  const value = `${width.value}x${height.value}`;
  const preset = [...size.options].find((option) => option.value === value);
  size.value = preset ? value : "custom";
}

function applyPreset() {
  if (size.value === "custom") return;
  [width.value, height.value] = size.value.split("x");
}

async function loadModels() {
  const untouched = model.value === model.defaultValue;
  let catalog;
  try {
    catalog = await api("/api/v1/models");
  } catch (error) {
    formError.textContent = `Could not list the models: ${describeError(error)}`;
    return;
  }
  const options = [];
  for (const entry of catalog.data) {
    const detail = `${entry.provider}: ${entry.upstream}`;
    options.push(h("option", { value: entry.id, label: detail }));
    for (const alias of entry.aliases) options.push(h("option", { value: alias, label: detail }));
  }
  document.getElementById("model-list").replaceChildren(...options);
  if (untouched && catalog.default_model) model.value = catalog.default_model;
}

mountKeyPanel();
form.addEventListener("submit", generate);
form.elements.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
size.addEventListener("change", applyPreset);
width.addEventListener("input", syncPreset);
height.addEventListener("input", syncPreset);
loadModels();
window.addEventListener(KEY_CHANGED, () => loadModels());
