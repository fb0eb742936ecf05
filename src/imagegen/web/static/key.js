// The optional API key: kept in sessionStorage (this tab only), sent as "Authorization: Bearer".
import { h } from "./render.js";

const STORAGE = "imagegen.apiKey";
/** Dispatched on window when the key is saved or forgotten: pages reload what they show. */
export const KEY_CHANGED = "imagegen-key-changed";

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE) || "";
  } catch {
    return "";
  }
}

function setKey(value) {
  try {
    if (value) sessionStorage.setItem(STORAGE, value);
    else sessionStorage.removeItem(STORAGE);
  } catch {
    // Storage refused (private mode): the key lasts as long as the page.
  }
}

function describe(state) {
  state.textContent = getKey() ? "A key is set for this tab." : "No key set.";
}

/** Builds the "API key" panel into #key-slot. */
export function mountKeyPanel() {
  const slot = document.getElementById("key-slot");
  if (!slot) return;
  const input = h("input", {
    id: "api-key", name: "api_key", type: "password", autocomplete: "off", spellcheck: "false",
  });
  const state = h("p", { class: "key-state", id: "key-state", role: "status" });
  const clear = h("button", { type: "button", id: "key-clear" }, "Forget");
  const form = h("form", { class: "key-form", id: "key-form" },
    h("label", { for: "api-key" }, "API key ", h("span", { class: "hint" }, "(kept in this tab only)")),
    input, h("button", { type: "submit" }, "Save"), clear, state);
  const panel = h("details", { class: "key", id: "key-panel" }, h("summary", {}, "API key"), form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    input.value = "";
    describe(state);
    window.dispatchEvent(new Event(KEY_CHANGED));
  });
  clear.addEventListener("click", () => {
    setKey("");
    describe(state);
    window.dispatchEvent(new Event(KEY_CHANGED));
  });
  describe(state);
  slot.replaceChildren(panel);
}

/** Opens the key panel with a message: the server asked for a key (401). */
export function askForKey(message) {
  const panel = document.getElementById("key-panel");
  const state = document.getElementById("key-state");
  if (!panel || !state) return;
  panel.open = true;
  state.textContent = message;
  document.getElementById("api-key").focus();
}
