// The admin page: mounts and listeners, with the Icecast admin commands as buttons. The
// browser sends the admin credentials it was asked for when it opened this page; the actions go
// as POST with the page's token (X-Agora-Token), which the server gave this page alone: the
// server refuses actions that a browser sends on another page's behalf.
"use strict";
(() => {
  const { el } = Agora;
  const box = document.getElementById("mounts");
  const result = document.getElementById("result");
  const none = document.getElementById("none");
  const tree = document.getElementById("tree");
  let busy = false;
  // A refresh asked for while one runs: run once more after it (a step's new page is shown).
  let again = false;

  async function json(path) {
    // From the origin: a page opened as http://user:pass@host/ has a base URL that fetch refuses.
    const r = await fetch(location.origin + path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const body = await r.json().catch(() => ({}));
    return { ok: r.ok, status: r.status, body };
  }

  // The token this page was served with (a restarted server has a new one: see send()).
  const tokenMeta = document.querySelector('meta[name="agora-admin-token"]');
  let token = tokenMeta ? tokenMeta.content : "";

  // The token of the admin page as the server serves it now (parsed, never run).
  async function currentToken() {
    const r = await fetch(location.origin + "/admin/", { credentials: "same-origin" });
    if (!r.ok) return "";
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const m = doc.querySelector('meta[name="agora-admin-token"]');
    return m ? m.content : "";
  }

  async function send(path, params) {
    const r = await fetch(`${location.origin}/admin/${path}.json`, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Agora-Token": token },
      // URLSearchParams: sent as application/x-www-form-urlencoded.
      body: new URLSearchParams(params),
    });
    const body = await r.json().catch(() => ({}));
    return { ok: r.ok, status: r.status, body };
  }

  // A deck request (#15) with the page's token: the upload (PUT, the PDF as the body) and the
  // steps (POST, parameters in the query). A 403 takes the server's new token and tries once more.
  async function deckRequest(method, path, body) {
    const go = async () => {
      const r = await fetch(location.origin + path, {
        method,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-Agora-Token": token, ...(body ? { "Content-Type": "application/pdf" } : {}) },
        body,
      });
      return { ok: r.ok, status: r.status, body: await r.json().catch(() => ({})) };
    };
    let r = await go();
    if (r.status === 403) {
      const fresh = await currentToken().catch(() => "");
      if (fresh && fresh !== token) {
        token = fresh;
        r = await go();
      }
    }
    return r;
  }

  // The mount the presenter keys step: the last deck used, else the first mount with a deck.
  let deckMount = null;
  const decks = new Map();

  async function stepDeck(mount, page) {
    const r = await deckRequest("POST", `/admin/decks/step?mount=${encodeURIComponent(mount)}&page=${encodeURIComponent(page)}`);
    deckMount = mount;
    result.textContent = r.ok ? `${mount}: ${r.body.message}` : `${mount}: ${r.body.error || r.status}`;
    await refresh();
  }

  async function uploadDeck(mount, file) {
    result.textContent = `${mount}: uploading and rendering ${file.name}…`;
    const r = await deckRequest("PUT", `/admin/decks?mount=${encodeURIComponent(mount)}&name=${encodeURIComponent(file.name)}`, file);
    deckMount = mount;
    result.textContent = r.ok ? `${mount}: ${file.name} ready, ${r.body.pages.length} pages` : `${mount}: ${r.body.error || r.status}`;
    await refresh();
  }

  // The slide deck of a mount: upload a PDF, then step through its pages.
  function deckPart(m, id, key) {
    const deck = decks.get(m.mount);
    const file = el("input", { type: "file", id: `${id}-deck`, accept: "application/pdf,.pdf", "data-key": key("deck-file") });
    file.addEventListener("change", () => {
      const f = file.files && file.files[0];
      file.value = "";
      if (f) uploadDeck(m.mount, f);
    });
    const upload = el("p", { class: "row" }, el("label", { for: file.id }, "Slide deck (PDF)"), file);
    if (!deck) return el("div", { class: "deck" }, upload);
    const n = deck.pages.length;
    const button = (label, page, what) => {
      const b = el("button", { type: "button", "data-key": key(`deck-${what}`), "data-deck-step": what }, label);
      b.addEventListener("click", () => stepDeck(m.mount, page));
      return b;
    };
    const cur = deck.page;
    const shown = cur ? deck.pages[cur - 1] : null;
    return el("div", { class: "deck", "data-deck": m.mount },
      upload,
      el("p", { class: "row" },
        button("First", "first", "first"),
        button("Previous", "prev", "prev"),
        button(cur ? "Next" : "Show page 1", "next", "next"),
        el("span", { class: "deck-page", "aria-live": "polite" }, cur ? `Page ${cur} of ${n}` : `${n} pages, none shown yet`),
        el("a", { href: deck.pdf, download: deck.name || "deck.pdf" }, "PDF")),
      shown ? el("img", { class: "deck-current", src: shown.url, alt: `Page ${cur} of the deck`, width: 320 }) : null,
      el("p", { class: "tech" }, "Keys: Page Down, →, space: next; Page Up, ←: previous; Home: first."),
    );
  }

  // A presenter remote sends these keys; not while typing or on a control that uses them.
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    const page = { PageDown: "next", ArrowRight: "next", ArrowDown: "next", " ": "next", PageUp: "prev", ArrowLeft: "prev", ArrowUp: "prev", Home: "first" }[e.key];
    if (!page) return;
    // Space on a button presses it: leave that to the button.
    if (e.key === " " && t && t.tagName === "BUTTON") return;
    const mount = deckMount && decks.has(deckMount) ? deckMount : [...decks.keys()][0];
    if (!mount) return;
    e.preventDefault();
    stepDeck(mount, page);
  });

  async function command(path, params) {
    let r = await send(path, params);
    if (r.status === 403) {
      // The server restarted since this page was loaded: take its new token, try once more.
      const fresh = await currentToken().catch(() => "");
      if (fresh && fresh !== token) {
        token = fresh;
        r = await send(path, params);
      }
    }
    result.textContent = `${r.body.message || r.status}`;
    await refresh();
  }

  function mountSection(m, clients, mounts) {
    const id = `m-${m.mount.replace(/[^a-z0-9]/gi, "_")}`;
    // data-key names each control across rebuilds, so focus and choices survive a refresh.
    const key = (what) => `${m.mount} ${what}`;
    const title = el("input", { type: "text", id: `${id}-title`, placeholder: "New title", "data-key": key("title") });
    const dest = el("select", { id: `${id}-dest`, "data-key": key("destination") });
    // Only mounts whose listeners could play this one's stream: the server refuses a move
    // between two formats it knows (409), as its players would break.
    const sameFormat = (other) => !m.format || !other.format || other.format === m.format;
    for (const other of mounts) {
      if (other.mount !== m.mount && sameFormat(other)) {
        dest.append(el("option", { value: other.mount }, other.mount));
      }
    }
    const rows = clients.map((c) =>
      el("tr", {},
        el("td", {}, String(c.id)),
        el("td", {}, c.ip),
        el("td", {}, c.user_agent || "—"),
        el("td", {}, `${c.connected} s`),
        el("td", {}, el("button", {
          type: "button",
          class: "danger",
          "data-kick": c.id,
          "data-key": key(`kick ${c.id}`),
          "aria-label": `Disconnect listener ${c.id}`,
        }, "Disconnect")),
      ),
    );
    const kick = (e) => {
      const idv = e.target.getAttribute("data-kick");
      if (idv) command("killclient", { mount: m.mount, id: idv });
    };
    const table = el("table", {},
      el("caption", { class: "sr-only" }, `Listeners of ${m.mount}`),
      el("thead", {}, el("tr", {}, el("th", {}, "ID"), el("th", {}, "IP"), el("th", {}, "Player"),
        el("th", {}, "Connected"), el("th", {}, el("span", { class: "sr-only" }, "Actions")))),
      el("tbody", {}, ...rows),
    );
    table.addEventListener("click", kick);
    const setTitle = el("form", { class: "row" },
      el("label", { for: title.id }, "Title"), title,
      el("button", { type: "submit", "data-key": key("set-title") }, "Set title"));
    setTitle.addEventListener("submit", (e) => {
      e.preventDefault();
      const song = title.value;
      // Cleared first: a field with text in it holds the page's refresh back.
      title.value = "";
      if (song) command("metadata", { mount: m.mount, mode: "updinfo", song });
    });
    const move = el("form", { class: "row" },
      el("label", { for: dest.id }, "Move listeners to"), dest,
      el("button", { type: "submit", "data-key": key("move") }, "Move"));
    move.addEventListener("submit", (e) => {
      e.preventDefault();
      if (dest.value) command("moveclients", { mount: m.mount, destination: dest.value });
    });
    const kill = el("button", {
      type: "button",
      class: "danger",
      "data-key": key("killsource"),
      "aria-label": `Disconnect the source of ${m.mount}`,
    }, "Disconnect the source");
    kill.addEventListener("click", () => command("killsource", { mount: m.mount }));
    return el("section", { class: "card", "aria-labelledby": id },
      el("h2", { id }, m.mount, " ", el("span", { class: m.source_connected ? "badge" : "badge off" },
        m.source_connected ? "live" : "waiting")),
      el("p", { class: "tech" }, `${m["content-type"] || "—"} · ${Agora.listeners(m.listeners)} · source connected ${m.connected} s`),
      setTitle,
      dest.options.length ? move : null,
      el("p", {}, kill),
      deckPart(m, id, key),
      clients.length ? table : el("p", { class: "muted" }, "No listeners."),
    );
  }

  // Relays and pushes of this server, and the edges that announced themselves to it: one
  // table each, shown when there is something in it.
  function treeSections(body) {
    const out = [];
    const table = (caption, heads, rows) => el("table", {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))))));
    const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
    if (body.relays && body.relays.length) {
      out.push(el("section", { class: "card", "aria-labelledby": "relays-h" },
        el("h2", { id: "relays-h" }, "Relays"),
        table("Relays and pushes of this server",
          ["Kind", "Mount", "Other server", "State", "Connections", "Bytes", "Last error"],
          body.relays.map((r) => [r.kind, r.mount, r.peer, `${r.state} (${r.seconds_in_state} s)`,
            String(r.connections), mb(r.bytes), r.last_error || "—"]))));
    }
    if (body.edges && body.edges.length) {
      out.push(el("section", { class: "card", "aria-labelledby": "edges-h" },
        el("h2", { id: "edges-h" }, "Edges"),
        el("p", { class: "tech" }, `${body.redirects} listeners sent to an edge`),
        table("Edges that announced themselves to this server",
          ["Edge", "Health", "Listeners", "Limit", "Mounts", "Sent there", "Last error"],
          body.edges.map((e) => [e.url, e.healthy ? "answering" : "not answering",
            e.listeners === null ? "—" : String(e.listeners),
            e.max_listeners === null ? "—" : String(e.max_listeners),
            e.mounts.join(" ") || "—", String(e.redirects), e.last_error || "—"]))));
    }
    return out;
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    // Don't rebuild under someone typing a title (a file input's value is its chosen file).
    if (document.activeElement && document.activeElement.tagName === "INPUT" && document.activeElement.value) return;
    busy = true;
    try {
      const r = await json("/admin/listmounts.json");
      if (!r.ok) {
        result.textContent = `Could not list mounts (${r.status}).`;
        return;
      }
      const mounts = r.body.icestats.source;
      const sections = [];
      for (const m of mounts) {
        const c = await json(`/admin/listclients.json?mount=${encodeURIComponent(m.mount)}`);
        const clients = c.ok ? c.body.icestats.source[0].clients : [];
        const d = await json(`/api/v1/decks${encodeURI(m.mount)}`);
        if (d.ok) decks.set(m.mount, d.body);
        else decks.delete(m.mount);
        sections.push(mountSection(m, clients, mounts));
      }
      // A keyboard user's place and chosen destinations survive the rebuild.
      const focused = document.activeElement ? document.activeElement.getAttribute("data-key") : null;
      const chosen = new Map([...box.querySelectorAll("select[data-key]")].map((s) => [s.dataset.key, s.value]));
      box.replaceChildren(...sections);
      // How many times the list was built (tests wait on it).
      box.dataset.builds = String(Number(box.dataset.builds || 0) + 1);
      for (const s of box.querySelectorAll("select[data-key]")) {
        const v = chosen.get(s.dataset.key);
        if (v && [...s.options].some((o) => o.value === v)) s.value = v;
      }
      const again = focused && [...box.querySelectorAll("[data-key]")].find((e) => e.dataset.key === focused);
      if (again) again.focus();
      none.hidden = mounts.length > 0;
      const t = await json("/admin/relays.json");
      if (t.ok) tree.replaceChildren(...treeSections(t.body));
    } catch (e) {
      result.textContent = `Could not reach the server: ${e.message}`;
    } finally {
      busy = false;
      if (again) {
        again = false;
        setTimeout(refresh, 0);
      }
    }
  }

  refresh();
  setInterval(refresh, 5000);
  Agora.events(() => {}, () => refresh());
})();
