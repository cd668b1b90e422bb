// The list of live mounts, kept current by /events.
"use strict";
(() => {
  const list = document.getElementById("mounts");
  const empty = document.getElementById("empty");
  const cards = new Map(); // mount path -> {li, view, parts}

  function build(v) {
    const { el } = Agora;
    const parts = {
      name: el("a", { href: v.watch }),
      badge: el("span", { class: "badge" }),
      description: el("p", { class: "muted" }),
      tech: el("p", { class: "tech" }),
      title: el("span", { class: "title" }),
      listeners: el("span", { class: "listeners" }),
      player: el("div"),
    };
    const li = el(
      "li",
      { class: "card", "data-mount": v.mount },
      el("h2", {}, parts.name, " ", parts.badge),
      parts.description,
      parts.tech,
      el("p", { class: "nowplaying" }, "Now playing: ", parts.title),
      el("p", {}, parts.listeners),
      parts.player,
      el(
        "p",
        { class: "links" },
        el("a", { href: v.watch }, "Open the watch page"),
        el("a", { href: v.m3u }, "Playlist (M3U)"),
        el("a", { href: v.xspf }, "Playlist (XSPF)"),
      ),
    );
    return { li, parts, view: null, kind: undefined };
  }

  function player(card, v) {
    const kind = v.playable || null;
    // Not playable: the reason may change (the format becomes known after the first bytes).
    const why = kind ? null : Agora.sentence(v.not_playable_because || "browsers cannot play this stream");
    if (card.kind === kind && card.why === why) return;
    card.kind = kind;
    card.why = why;
    const box = card.parts.player;
    box.replaceChildren();
    if (!kind) {
      box.append(Agora.el("p", { class: "notice" }, why, " Use the playlist links below."));
      return;
    }
    // preload="none": nothing is downloaded until someone presses play.
    const media = Agora.el(kind === "video" ? "video" : "audio", {
      controls: true,
      preload: "none",
      "aria-label": `Play ${v.name || v.mount}`,
    });
    media.src = Agora.playUrl(v.mount, 0);
    box.append(media);
  }

  function render(card, v) {
    const p = card.parts;
    p.name.textContent = v.name || v.mount;
    p.badge.textContent = v.connected ? "live" : "waiting";
    p.badge.className = v.connected ? "badge" : "badge off";
    p.description.textContent = v.description || "";
    p.tech.textContent = Agora.describe(v);
    p.title.textContent = v.title || "—";
    p.listeners.textContent = Agora.listeners(v.listeners + (v.edge_listeners || 0));
    player(card, v);
    card.view = v;
  }

  function update() {
    empty.textContent = cards.size ? "" : "No stream is live right now. This page updates by itself.";
    empty.hidden = cards.size > 0;
  }

  Agora.events(
    (v) => {
      let card = cards.get(v.mount);
      if (!card) {
        card = build(v);
        cards.set(v.mount, card);
        // Keep path order.
        const after = [...cards.keys()].sort().filter((k) => k > v.mount)[0];
        list.insertBefore(card.li, after ? cards.get(after).li : null);
      }
      render(card, v);
      update();
    },
    (mount) => {
      const card = cards.get(mount);
      if (card) {
        card.li.remove();
        cards.delete(mount);
      }
      update();
    },
  );
  setTimeout(update, 3000);
})();
