// One generation on screen: its state, progress and Cancel while it runs, then its results.
import { api, describeError, follow } from "./api.js";
import { TERMINAL, duration, factsView, h, imagesView, inputsView, seconds, stateBadge } from "./render.js";

export class JobView {
  constructor(container, { title = "Generation", permalink = true } = {}) {
    this.container = container;
    this.title = title;
    this.permalink = permalink;
    this.generation = null;
    this.progress = null;
    this.controller = null;
    this.timer = null;
    this.announced = null;
    // State changes are announced here, once each; the panel itself is redrawn too often.
    this.announcer = h("p", { class: "visually-hidden", role: "status", id: "job-announce" });
    container.after(this.announcer);
  }

  /** Shows `generation` and, unless it has ended, follows its events until it does. */
  async track(generation) {
    this.stop();
    this.progress = generation.progress ?? null;
    this.show(generation);
    if (TERMINAL.has(generation.status)) return;
    const controller = new AbortController();
    this.controller = controller;
    this.timer = setInterval(() => this.tick(), 250);
    try {
      await follow(generation.id, (event, data) => this.onEvent(event, data), controller.signal);
    } catch (error) {
      this.showError(describeError(error));
    } finally {
      if (this.controller === controller) this.stop();
    }
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearInterval(this.timer);
    this.timer = null;
  }

  onEvent(event, data) {
    if (event === "progress") {
      this.progress = data.progress;
      this.updateProgress();
    } else if (data && data.status) {
      if (data.progress !== null && data.progress !== undefined) this.progress = data.progress;
      this.show(data);
    }
  }

  show(generation) {
    this.generation = generation;
    const running = !TERMINAL.has(generation.status);
    const title = h("h2", { class: "job-title" }, `${this.title} `, stateBadge(generation.status));
    const link = this.permalink
      ? h("a", { href: `/generations/${encodeURIComponent(generation.id)}`, class: "permalink" }, "Permalink")
      : null;
    const parts = [h("div", { class: "job-head" }, title, h("span", { class: "elapsed", id: "job-elapsed" }), link)];
    if (running) {
      const cancel = h("button", { type: "button", class: "cancel", id: "job-cancel" }, "Cancel");
      cancel.addEventListener("click", () => this.cancel(cancel));
      parts.push(h("div", { class: "progress-row" },
        h("div", {
          class: "progress", id: "job-progress", role: "progressbar",
          "aria-label": "Generation progress", "aria-valuemin": "0", "aria-valuemax": "100",
        }, h("div", { class: "bar" })),
        cancel));
    }
    parts.push(h("p", { class: "form-error", id: "job-error", role: "alert" },
      generation.error ? `${generation.error_code ? `${generation.error_code}: ` : ""}${generation.error}` : ""));
    parts.push(imagesView(generation), factsView(generation), inputsView(generation));
    const hadFocus = document.activeElement && document.activeElement.id === "job-cancel";
    this.container.hidden = false;
    this.container.replaceChildren(...parts.filter(Boolean));
    if (hadFocus && running) this.container.querySelector("#job-cancel").focus();
    this.container.dataset.status = generation.status;
    this.announce(generation);
    this.updateProgress();
    this.tick();
  }

  announce(generation) {
    if (this.announced === `${generation.id} ${generation.status}`) return;
    this.announced = `${generation.id} ${generation.status}`;
    const count = (generation.images || []).length;
    const detail = generation.status === "succeeded" ? `: ${count} image${count === 1 ? "" : "s"}`
      : generation.error ? `: ${generation.error}` : "";
    this.announcer.textContent = `Generation ${generation.status}${detail}`;
  }

  updateProgress() {
    const bar = this.container.querySelector("[role=progressbar]");
    if (!bar) return;
    const fill = bar.querySelector(".bar");
    if (this.progress === null || this.progress === undefined) {
      bar.removeAttribute("aria-valuenow");
      bar.setAttribute("aria-valuetext", this.generation.status);
      bar.classList.add("indeterminate");
      fill.style.width = "";
      return;
    }
    const percent = Math.round(Math.max(0, Math.min(1, this.progress)) * 100);
    bar.classList.remove("indeterminate");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${this.generation.status}, ${percent}%`);
    fill.style.width = `${percent}%`;
  }

  tick() {
    const label = this.container.querySelector("#job-elapsed");
    if (!label || !this.generation) return;
    if (TERMINAL.has(this.generation.status)) {
      label.textContent = this.generation.completed_at ? `took ${duration(this.generation)}` : "";
      return;
    }
    const since = Date.now() - Date.parse(this.generation.created_at);
    const percent = this.progress === null || this.progress === undefined ? "" : ` · ${Math.round(this.progress * 100)}%`;
    label.textContent = `${this.generation.status}${percent} · ${seconds(Math.max(0, since))}`;
  }

  async cancel(button) {
    button.disabled = true;
    button.textContent = "Canceling…";
    try {
      const generation = await api(`/api/v1/generations/${encodeURIComponent(this.generation.id)}/cancel`,
        { method: "POST" });
      if (TERMINAL.has(generation.status)) this.stop();
      this.show(generation);
    } catch (error) {
      button.disabled = false;
      button.textContent = "Cancel";
      this.showError(describeError(error));
    }
  }

  showError(message) {
    const box = this.container.querySelector("#job-error");
    if (box) box.textContent = message;
  }
}
