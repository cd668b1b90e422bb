// Shared helpers for Agora's pages. Text always goes in through textContent.
"use strict";
const Agora = {
  // el("p", {class: "x"}, "text", child...)
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  },

  // "VP8/Opus · 640x360 · 128 kbit/s"
  describe(v) {
    const parts = [];
    if (v.codecs) parts.push(v.codecs);
    if (v.frame_size) parts.push(v.frame_size);
    if (v.bitrate) parts.push(`${v.bitrate} kbit/s`);
    if (!parts.length && v.content_type) parts.push(v.content_type);
    return parts.join(" · ");
  },

  // An API reason ("browsers no longer play Ogg Theora") as a sentence of a page.
  sentence(text) {
    const t = String(text).trim();
    if (!t) return t;
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?]$/.test(s) ? s : `${s}.`;
  },

  listeners(n) {
    return n === 1 ? "1 listener" : `${n} listeners`;
  },

  // Live mount views from /events: onMount(view) for every mount now and on every change,
  // onGone(path) when a mount closes. EventSource reconnects by itself.
  events(onMount, onGone) {
    const es = new EventSource(`${location.origin}/events`);
    es.addEventListener("mount", (e) => onMount(JSON.parse(e.data)));
    es.addEventListener("gone", (e) => onGone(JSON.parse(e.data).mount));
    return es;
  },

  // The listening URL for a page's player: `?page` makes the server end the response when the
  // source goes away, so the player reconnects to the next stream instead of choking on it.
  playUrl(mount, n) {
    return `${mount}?page=1&n=${n}`;
  },
};
