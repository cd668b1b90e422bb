// One mount's player. It follows /events: it starts when the source is live, shows "waiting"
// while it is not, and reconnects by itself (a new response, never a page reload) when the
// source comes back or the stream stops advancing.
"use strict";
(() => {
  // Set once per page load; a test checks it survives source restarts (no reload).
  window.agoraPageLoad = window.agoraPageLoad || Date.now();

  const mount = decodeURIComponent(location.pathname.replace(/^\/watch/, "")) || "/";
  const $ = (id) => document.getElementById(id);
  const stage = $("stage");
  const state = $("state");
  let view = null;
  let media = null;
  let kind;
  let attempt = 0;
  let retry = null;
  let lastTime = -1;
  let lastAdvance = Date.now();

  const origin = location.origin;
  $("m3u").href = `${mount}.m3u`;
  $("xspf").href = `${mount}.xspf`;
  $("direct").href = mount;
  $("direct").textContent = `${origin}${mount}`;
  $("embed").value = `<iframe src="${origin}/watch${mount}" width="640" height="480" allow="autoplay" title="Live stream"></iframe>`;
  $("copy").addEventListener("click", async () => {
    $("embed").select();
    try {
      await navigator.clipboard.writeText($("embed").value);
      $("copied").textContent = "Copied.";
    } catch {
      $("copied").textContent = "Selected: press Ctrl+C to copy.";
    }
  });
  // Embedded in an iframe: just the player and its status.
  if (window.top !== window.self) $("site").hidden = true;

  function say(text, live) {
    state.textContent = text;
    state.className = live ? "live" : "";
  }

  function setKind(k) {
    if (k === kind) return;
    kind = k;
    stop();
    stage.replaceChildren();
    media = null;
    if (!k) {
      const why = (view && view.not_playable_because) || "Browsers cannot play this stream.";
      stage.append(
        Agora.el("p", { class: "notice", id: "not-playable" }, why, " ",
          Agora.el("a", { href: `${mount}.m3u` }, "Open the playlist"), " in VLC or mpv."),
      );
      return;
    }
    // Muted so that browsers allow it to start by itself; the controls unmute.
    media = Agora.el(k === "video" ? "video" : "audio", {
      id: "player",
      controls: true,
      autoplay: true,
      muted: true,
      playsinline: true,
      "aria-label": "Live stream player",
    });
    media.muted = true;
    media.addEventListener("playing", () => say("Live", true));
    media.addEventListener("error", () => again("error"));
    media.addEventListener("ended", () => again("ended"));
    stage.append(media);
  }

  function stop() {
    clearTimeout(retry);
    retry = null;
    if (media && media.getAttribute("src")) {
      media.removeAttribute("src");
      media.load();
    }
  }

  function connect() {
    if (!media) return;
    clearTimeout(retry);
    retry = null;
    attempt += 1;
    lastTime = -1;
    lastAdvance = Date.now();
    media.src = Agora.playUrl(mount, attempt);
    const p = media.play();
    if (p) p.catch(() => say("Press play to start", false));
  }

  // The response ended or failed: come back if the source is live, else wait for it.
  function again(why) {
    if (retry) return;
    if (view && view.connected && view.playable) {
      say("Reconnecting…", false);
      retry = setTimeout(() => {
        retry = null;
        connect();
      }, Math.min(1000 * attempt, 5000));
    } else {
      say("Waiting for the stream…", false);
    }
    console.debug("player", why);
  }

  function render(v) {
    const was = view;
    view = v;
    if (!v) {
      $("listeners").textContent = "0";
      say("Waiting for the stream…", false);
      stop();
      return;
    }
    $("name").textContent = v.name || v.mount;
    document.title = `${v.name || v.mount} · Agora`;
    $("description").textContent = v.description || "";
    $("title").textContent = v.title || "—";
    // Viewers sent to edges of this server count too.
    $("listeners").textContent = String(v.listeners + (v.edge_listeners || 0));
    $("tech").textContent = Agora.describe(v);
    if (!v.connected) {
      say("Waiting for the stream…", false);
      return;
    }
    setKind(v.playable || null);
    if (!media) {
      say(v.not_playable_because || "Not playable here", false);
      return;
    }
    // Connect on the first live view and whenever the source comes back.
    if (!was || !was.connected || !media.getAttribute("src")) connect();
  }

  Agora.events(
    (v) => {
      if (v.mount === mount) render(v);
    },
    (m) => {
      if (m === mount) render(null);
    },
  );
  say("Waiting for the stream…", false);

  // Watchdog: live, playing, but no progress for 8 s: start a fresh response.
  setInterval(() => {
    if (!media || !view || !view.connected || retry) return;
    if (media.currentTime !== lastTime) {
      lastTime = media.currentTime;
      lastAdvance = Date.now();
    } else if (!media.paused && Date.now() - lastAdvance > 8000) {
      again("stalled");
    }
  }, 1000);
})();
