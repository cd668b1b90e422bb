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

  const slides = slidePanel();

  function setKind(k) {
    // Not playable: the reason may change (the format becomes known after the first bytes).
    const why = k ? null : Agora.sentence((view && view.not_playable_because) || "browsers cannot play this stream");
    if (k === kind && why === notice) return;
    kind = k;
    notice = why;
    stop();
    screen.replaceChildren();
    stage.classList.toggle("audio", k === "audio");
    $("theatre").classList.toggle("audio", k === "audio");
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
    media.addEventListener("timeupdate", () => slides.tick());
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
    if (!was || !was.connected || !media.getAttribute("src")) {
      connect();
      slides.load();
    }
  }

  const es = Agora.events(
    (v) => {
      if (v.mount === mount) render(v);
    },
    (m) => {
      if (m === mount) render(null);
    },
  );
  es.addEventListener("slide", (e) => {
    const s = JSON.parse(e.data);
    if (s.mount === mount) slides.add(s);
  });
  // Reconnected to /events: slides announced meanwhile were missed; the list has them.
  es.addEventListener("open", () => slides.load());
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

  // The slides panel (#15): the mount's slides beside the player, switching when this
  // viewer's playback reaches the moment each slide appeared, not when the page learns of it.
  //
  // Where playback is on the stream's timeline (the clock of a slide's `at`): for WebM and
  // Ogg, Chromium's `currentTime` is that clock itself, joined mid-stream included (the
  // Cluster timecodes, the granule time; measured with frames that carry their own time, see
  // the browser test `the_watch_pages_slides_follow_playback`). MP3 and AAC carry no time:
  // the player counts from 0 at the join, so there a slide is due when the page learns of it
  // plus how far the player runs behind the bytes it has received (the slides already listed
  // when the page connects are due at once).
  function slidePanel() {
    const panel = $("slides");
    const img = $("slide-img");
    const pos = $("slide-pos");
    const prev = $("slide-prev");
    const next = $("slide-next");
    const live = $("slide-live");
    const download = $("slide-download");
    const full = $("slide-full");
    const fullImg = $("slide-full-img");
    // Every slide known, ordered by `at`, then id: {id, at, url, due}.
    let list = [];
    // The slide paged to by the viewer, or null: following playback.
    let pinned = null;
    let shown = null;
    let loading = null;

    const order = (a, b) => a.at - b.at || a.id - b.id;
    const clock = (at) => {
      const t = Math.floor(at);
      const h = Math.floor(t / 3600);
      const m = String(Math.floor(t / 60) % 60).padStart(h ? 2 : 1, "0");
      const sec = String(t % 60).padStart(2, "0");
      return h ? `${h}:${m}:${sec}` : `${m}:${sec}`;
    };
    // The stream carries its own time (WebM, Ogg) or the player counts from its join.
    const timed = () => !view || /webm|ogg|opus/i.test(view.content_type || "");
    // The playback's moment on the stream's timeline, or null before it plays.
    const playhead = () => (media && media.readyState >= 2 && timed() ? media.currentTime : null);
    // How far the player runs behind what it has received, in seconds.
    function behind() {
      if (!media || !media.buffered.length) return 0;
      return Math.max(0, media.buffered.end(media.buffered.length - 1) - media.currentTime);
    }

    // The slide playback has reached: the last one whose moment has come.
    function current() {
      if (!list.length) return null;
      let c = null;
      if (timed()) {
        const t = playhead();
        if (t === null) return list[list.length - 1];
        for (const s of list) if (s.at <= t) c = s;
      } else {
        const now = performance.now();
        for (const s of list) if (s.due <= now) c = s;
      }
      return c;
    }

    function show(s) {
      const index = s ? list.indexOf(s) : -1;
      panel.hidden = !list.length;
      $("theatre").classList.toggle("with-slides", list.length > 0);
      prev.disabled = !list.length || (s !== null && index <= 0);
      next.disabled = !pinned || index >= list.length - 1;
      live.setAttribute("aria-pressed", String(!pinned));
      panel.classList.toggle("pinned", !!pinned);
      if (s === shown) return;
      shown = s;
      if (!s) {
        img.removeAttribute("src");
        img.alt = "";
        panel.dataset.id = "";
        panel.dataset.at = "";
        pos.textContent = "No slide yet";
        download.removeAttribute("href");
        $("slide-open").disabled = true;
        return;
      }
      img.src = s.url;
      img.alt = `Slide ${index + 1} of ${list.length}, at ${clock(s.at)}`;
      panel.dataset.id = String(s.id);
      panel.dataset.at = String(s.at);
      pos.textContent = `${index + 1} / ${list.length}`;
      download.href = s.url;
      download.setAttribute("aria-label", `Download slide ${index + 1}`);
      $("slide-open").disabled = false;
    }

    function tick() {
      show(pinned || current());
    }

    function add(s) {
      const known = list.find((x) => x.id === s.id);
      if (known) return;
      // Fetched now, shown from the cache when its moment comes.
      new Image().src = s.url;
      const due = performance.now() + (timed() ? 0 : behind() * 1000);
      list.push({ id: s.id, at: s.at, url: s.url, due });
      list.sort(order);
      // Its position changed the counts shown; the slide shown stays.
      const s0 = shown;
      shown = null;
      show(pinned || s0);
      tick();
    }

    // The mount's list (on load, when the source comes back, after /events reconnects).
    async function load() {
      if (loading) return;
      loading = (async () => {
        try {
          const r = await fetch(`/api/v1/slides${mount}`, { cache: "no-store" });
          if (!r.ok) return;
          const body = await r.json();
          for (const s of body.slides || []) {
            if (!list.some((x) => x.id === s.id)) list.push({ id: s.id, at: s.at, url: s.url, due: 0 });
          }
          list.sort(order);
          shown = null;
          tick();
        } catch {
          // Offline for a moment: the next (re)connection loads it again.
        } finally {
          loading = null;
        }
      })();
    }

    function page(step) {
      const from = shown ? list.indexOf(shown) : list.length;
      const to = Math.min(Math.max(from + step, 0), list.length - 1);
      if (to < 0) return;
      pinned = list[to];
      tick();
    }
    prev.addEventListener("click", () => page(-1));
    next.addEventListener("click", () => page(1));
    live.addEventListener("click", () => {
      pinned = null;
      tick();
    });
    $("slide-open").addEventListener("click", () => {
      if (!shown) return;
      fullImg.src = shown.url;
      fullImg.alt = img.alt;
      full.showModal();
    });
    // Left and right arrows page while the panel has the focus.
    panel.addEventListener("keydown", (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "ArrowLeft") page(-1);
      else if (e.key === "ArrowRight") page(1);
      else return;
      e.preventDefault();
    });
    // Between the player's time updates too: a switch is due within a second.
    setInterval(tick, 250);
    show(null);
    return { add, load, tick };
  }
})();
