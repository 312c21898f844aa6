// labelsift review page: plain JavaScript, no build step, no third-party code.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  const template = $("card-template");
  const view = { page: 1, pages: 1, data: null, focus: 0, busy: false };

  function pageFromHash() {
    const match = /page=(\d+)/.exec(window.location.hash);
    return match ? Math.max(1, parseInt(match[1], 10)) : 1;
  }

  function showStatus(message) {
    const status = $("status");
    status.textContent = message || "";
    status.hidden = !message;
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    const value = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(value.error || `${response.status} ${response.statusText}`);
    }
    return value;
  }

  function fmt(n) {
    return Number(n).toLocaleString(undefined, { maximumFractionDigits: 1 });
  }

  function renderProgress(progress) {
    const { total, done, left, accepted, rejected, skipped } = progress;
    $("bar-fill").style.width = total ? `${(100 * done) / total}%` : "0";
    $("progress-text").textContent = total
      ? `${done} of ${total} done · ${left} left · ${accepted} accepted · ${rejected} rejected` +
        (skipped ? ` · ${skipped} skipped` : "")
      : "Nothing to review";
  }

  function fit(card) {
    const frame = card.querySelector(".frame");
    const pic = card.querySelector(".pic");
    const w = Number(pic.dataset.w) || 4;
    const h = Number(pic.dataset.h) || 3;
    const scale = Math.min(frame.clientWidth / w, frame.clientHeight / h);
    pic.style.width = `${Math.max(1, Math.round(w * scale))}px`;
    pic.style.height = `${Math.max(1, Math.round(h * scale))}px`;
  }

  function setState(card, state) {
    card.classList.remove("state-open", "state-accepted", "state-rejected", "state-skipped");
    card.classList.add(`state-${state}`);
    card.dataset.state = state;
    card.querySelector(".badge").textContent = state === "open" ? "" : state;
    for (const button of card.querySelectorAll("[data-verdict]")) {
      const pressed =
        (button.dataset.verdict === "accept" && state === "accepted") ||
        (button.dataset.verdict === "reject" && state === "rejected") ||
        (button.dataset.verdict === "skip" && state === "skipped");
      button.setAttribute("aria-pressed", pressed ? "true" : "false");
    }
  }

  function makeCard(item, index) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = String(item.id);
    card.dataset.index = String(index);
    card.setAttribute("aria-label", `${item.name}, ${fmt(item.confidence)}%`);
    const pic = card.querySelector(".pic");
    pic.dataset.w = String(item.width || 4);
    pic.dataset.h = String(item.height || 3);
    const img = card.querySelector("img");
    img.alt = item.name;
    img.addEventListener("load", () => {
      pic.dataset.w = String(img.naturalWidth);
      pic.dataset.h = String(img.naturalHeight);
      fit(card);
    });
    img.addEventListener("error", () => {
      const note = document.createElement("span");
      note.className = "broken";
      note.textContent = "Image could not be read";
      card.querySelector(".frame").replaceChildren(note);
    });
    img.src = `/img/${item.id}`;
    for (const box of item.boxes) {
      const div = document.createElement("div");
      div.className = "box";
      div.style.left = `${100 * box.left}%`;
      div.style.top = `${100 * box.top}%`;
      div.style.width = `${100 * box.width}%`;
      div.style.height = `${100 * box.height}%`;
      div.title = `${fmt(box.confidence)}%`;
      pic.appendChild(div);
    }
    const name = card.querySelector(".name");
    name.textContent = item.name;
    name.title = item.source;
    card.querySelector(".conf").textContent = `${fmt(item.confidence)}%`;
    setState(card, item.state);
    card.addEventListener("click", (event) => {
      const button = event.target.closest("[data-verdict]");
      focusCard(index, false);
      if (button) {
        decide(index, button.dataset.verdict, false);
      }
    });
    return card;
  }

  function cards() {
    return Array.from(grid.querySelectorAll(".card"));
  }

  function focusCard(index, scroll = true) {
    const all = cards();
    if (!all.length) return;
    view.focus = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((card, i) => card.classList.toggle("focused", i === view.focus));
    const card = all[view.focus];
    card.focus({ preventScroll: true });
    if (scroll) card.scrollIntoView({ block: "nearest" });
  }

  function renderEmpty(data) {
    const empty = $("empty");
    const [low, high] = data.band;
    const outside = data.outside_band;
    empty.replaceChildren();
    const h2 = document.createElement("h2");
    h2.textContent = "Nothing to review";
    const p = document.createElement("p");
    p.textContent =
      `No image in this manifest has “${data.label}” with a confidence between ${fmt(low)}% and ${fmt(high)}%. ` +
      (outside
        ? `${outside} image(s) match “${data.label}” outside that band; widen the band to review them.`
        : `No image matches “${data.label}” at all; check the label name (aliases and parents count too).`);
    empty.append(h2, p);
    empty.hidden = false;
  }

  function render(data, focusIndex) {
    view.data = data;
    view.page = data.page;
    view.pages = data.pages;
    const [low, high] = data.band;
    const what = $("what");
    what.replaceChildren(
      "Label ",
      Object.assign(document.createElement("strong"), { textContent: data.label }),
      ` · confidence ${fmt(low)}–${fmt(high)}% · ${data.progress.total} image(s), highest confidence first`
    );
    document.title = `Review ${data.label} – labelsift`;
    renderProgress(data.progress);
    $("page-text").textContent = `Page ${data.page} of ${data.pages}`;
    $("prev").disabled = data.page <= 1;
    $("next").disabled = data.page >= data.pages;
    $("accept-page").disabled = !data.items.some((item) => item.state === "open" || item.state === "skipped");
    grid.replaceChildren(...data.items.map(makeCard));
    cards().forEach(fit);
    if (!data.items.length) {
      renderEmpty(data);
      document.querySelector(".toolbar").hidden = true;
      return;
    }
    $("empty").hidden = true;
    focusCard(focusIndex === "last" ? data.items.length - 1 : focusIndex || 0, false);
  }

  async function load(page, focusIndex) {
    try {
      const data = await api(`/api/items?page=${page}`);
      showStatus("");
      if (window.location.hash !== `#page=${data.page}`) {
        history.replaceState(null, "", `#page=${data.page}`);
      }
      render(data, focusIndex);
    } catch (error) {
      showStatus(`Could not load page ${page}: ${error.message}`);
    }
  }

  async function decide(index, verdict, advance) {
    const card = cards()[index];
    if (!card) return;
    const accepted = verdict === "accept" ? true : verdict === "reject" ? false : null;
    try {
      const result = await api("/api/verdict", { id: Number(card.dataset.id), accepted });
      setState(card, result.state);
      renderProgress(result.progress);
      showStatus("");
      if (advance) focusCard(index + 1);
    } catch (error) {
      showStatus(`Could not save that verdict: ${error.message}. Nothing was recorded; try again.`);
    }
  }

  async function acceptPage() {
    try {
      const result = await api("/api/accept-page", { page: view.page });
      renderProgress(result.progress);
      await load(view.page, view.focus);
    } catch (error) {
      showStatus(`Could not accept the page: ${error.message}`);
    }
  }

  function columns() {
    const template = getComputedStyle(grid).gridTemplateColumns;
    return Math.max(1, template.split(" ").filter(Boolean).length);
  }

  function go(page, focusIndex) {
    if (page >= 1 && page <= view.pages && page !== view.page) load(page, focusIndex);
  }

  function move(delta) {
    const target = view.focus + delta;
    const count = cards().length;
    if (target < 0 && view.page > 1) go(view.page - 1, "last");
    else if (target >= count && view.page < view.pages) go(view.page + 1, 0);
    else focusCard(target);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
    if (!view.data || !view.data.items.length) return;
    const key = event.key;
    let handled = true;
    if (key === "ArrowRight" || key === "j") move(1);
    else if (key === "ArrowLeft" || key === "k") move(-1);
    else if (key === "ArrowDown") move(columns());
    else if (key === "ArrowUp") move(-columns());
    else if (key === "a") decide(view.focus, "accept", true);
    else if (key === "r") decide(view.focus, "reject", true);
    else if (key === "s") decide(view.focus, "skip", true);
    else if (key === "A") acceptPage();
    else if (key === "n" || key === "PageDown") go(view.page + 1, 0);
    else if (key === "p" || key === "PageUp") go(view.page - 1, 0);
    else handled = false;
    if (handled) event.preventDefault();
  });

  $("prev").addEventListener("click", () => go(view.page - 1, 0));
  $("next").addEventListener("click", () => go(view.page + 1, 0));
  $("accept-page").addEventListener("click", acceptPage);
  window.addEventListener("resize", () => cards().forEach(fit));
  window.addEventListener("hashchange", () => go(pageFromHash(), 0));

  load(pageFromHash(), 0);
})();
