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
  const screen = $("screen");
  const sound = $("sound");
  const state = $("state");
  let view = null;
  let media = null;
  let kind;
  let notice = null;
  let attempt = 0;
  let retry = null;
  let lastTime = -1;
  let lastAdvance = Date.now();
  // The viewer turned the sound on in this page: a new player (the source came back with
  // another kind of stream) starts with sound too.
  let wantSound = false;

  const origin = location.origin;
  $("m3u").href = `${mount}.m3u`;
  $("xspf").href = `${mount}.xspf`;
  $("direct").href = mount;
  $("direct").textContent = `${origin}${mount}`;
  // The snippet: `?embed` makes the page the player alone, filling the frame at any size
  // (see embed.js); the suggested size fits what the mount carries.
  const attr = (s) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  function snippet() {
    const [w, h] = kind === "audio" ? [640, 160] : [640, 360];
    const title = attr((view && view.name) || "Live stream");
    $("embed").value = `<iframe src="${origin}${location.pathname}?embed" width="${w}" height="${h}" allow="autoplay; fullscreen" allowfullscreen title="${title}"></iframe>`;
  }
  snippet();
  $("copy").addEventListener("click", async () => {
    $("embed").select();
    try {
      await navigator.clipboard.writeText($("embed").value);
      $("copied").textContent = "Copied.";
    } catch {
      $("copied").textContent = "Selected: press Ctrl+C to copy.";
    }
  });

  // Sound: the player starts muted (browsers start only muted media by themselves), and the
  // "click for sound" control over it says so until the sound is on. M toggles the sound.
  const silent = () => media.muted || media.volume === 0;
  function showSound() {
    sound.hidden = !media || !silent();
  }
  function soundOn() {
    if (!media) return;
    wantSound = true;
    media.muted = false;
    if (media.volume === 0) media.volume = 1;
    // A click is what a browser that refused to start the stream waits for.
    if (media.paused && media.getAttribute("src")) media.play().catch(() => {});
    showSound();
  }
  sound.addEventListener("click", soundOn);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "m" && e.key !== "M") return;
    if (e.defaultPrevented || e.repeat || e.altKey || e.ctrlKey || e.metaKey || !media) return;
    const t = e.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    e.preventDefault();
    if (silent()) {
      soundOn();
    } else {
      wantSound = false;
      media.muted = true;
    }
  });

  function say(text, live) {
    state.textContent = text;
    state.className = live ? "live" : "";
  }

  function setKind(k) {
    // Not playable: the reason may change (the format becomes known after the first bytes).
    const why = k ? null : Agora.sentence((view && view.not_playable_because) || "browsers cannot play this stream");
    if (k === kind && why === notice) return;
    kind = k;
    notice = why;
    stop();
    screen.replaceChildren();
    stage.classList.toggle("audio", k === "audio");
    media = null;
    showSound();
    snippet();
    if (!k) {
      screen.append(
        Agora.el("p", { class: "notice", id: "not-playable" }, why, " ",
          Agora.el("a", { href: `${mount}.m3u` }, "Open the playlist"), " in VLC or mpv."),
      );
      return;
    }
    // Muted so that browsers let it start by itself (unless the viewer asked for sound in
    // this page already); the sound control and the player's own controls unmute.
    media = Agora.el(k === "video" ? "video" : "audio", {
      id: "player",
      controls: true,
      autoplay: true,
      muted: !wantSound,
      playsinline: true,
      "aria-label": "Live stream player",
    });
    media.muted = !wantSound;
    media.addEventListener("playing", () => say("Live", true));
    media.addEventListener("error", () => again("error"));
    media.addEventListener("ended", () => again("ended"));
    // The player's own controls count too: sound on there is sound on.
    media.addEventListener("volumechange", () => {
      wantSound = !silent();
      showSound();
    });
    screen.append(media);
    showSound();
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
    const m = media;
    const p = m.play();
    if (p) {
      p.catch((e) => {
        if (e && e.name === "NotAllowedError" && !m.muted) {
          // Sound without a click of the viewer's: start muted, the sound control shows.
          m.muted = true;
          m.play().catch(() => say("Press play to start", false));
        } else {
          say("Press play to start", false);
        }
      });
    }
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
    if (!was || was.name !== v.name) snippet();
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
      // The notice in the player's place says why and what to do.
      say("Not playable in a browser", false);
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
