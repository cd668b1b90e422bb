// The admin page: mounts and listeners, with the Icecast admin commands as buttons. The
// browser sends the admin credentials it was asked for when it opened this page.
"use strict";
(() => {
  const { el } = Agora;
  const box = document.getElementById("mounts");
  const result = document.getElementById("result");
  const none = document.getElementById("none");
  let busy = false;

  async function json(path) {
    // From the origin: a page opened as http://user:pass@host/ has a base URL that fetch refuses.
    const r = await fetch(location.origin + path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const body = await r.json().catch(() => ({}));
    return { ok: r.ok, status: r.status, body };
  }

  async function command(path, params) {
    const q = new URLSearchParams(params).toString();
    const r = await json(`/admin/${path}.json?${q}`);
    result.textContent = `${r.body.message || r.status}`;
    await refresh();
  }

  function mountSection(m, clients, mounts) {
    const id = `m-${m.mount.replace(/[^a-z0-9]/gi, "_")}`;
    const title = el("input", { type: "text", id: `${id}-title`, placeholder: "New title" });
    const dest = el("select", { id: `${id}-dest` });
    for (const other of mounts) {
      if (other.mount !== m.mount) dest.append(el("option", { value: other.mount }, other.mount));
    }
    const rows = clients.map((c) =>
      el("tr", {},
        el("td", {}, String(c.id)),
        el("td", {}, c.ip),
        el("td", {}, c.user_agent || "—"),
        el("td", {}, `${c.connected} s`),
        el("td", {}, el("button", { type: "button", class: "danger", "data-kick": c.id }, "Disconnect")),
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
      el("label", { for: title.id }, "Title"), title, el("button", { type: "submit" }, "Set title"));
    setTitle.addEventListener("submit", (e) => {
      e.preventDefault();
      if (title.value) command("metadata", { mount: m.mount, mode: "updinfo", song: title.value });
    });
    const move = el("form", { class: "row" },
      el("label", { for: dest.id }, "Move listeners to"), dest, el("button", { type: "submit" }, "Move"));
    move.addEventListener("submit", (e) => {
      e.preventDefault();
      if (dest.value) command("moveclients", { mount: m.mount, destination: dest.value });
    });
    const kill = el("button", { type: "button", class: "danger" }, "Disconnect the source");
    kill.addEventListener("click", () => command("killsource", { mount: m.mount }));
    return el("section", { class: "card", "aria-labelledby": id },
      el("h2", { id }, m.mount, " ", el("span", { class: m.source_connected ? "badge" : "badge off" },
        m.source_connected ? "live" : "waiting")),
      el("p", { class: "tech" }, `${m["content-type"] || "—"} · ${Agora.listeners(m.listeners)} · source connected ${m.connected} s`),
      setTitle,
      mounts.length > 1 ? move : null,
      el("p", {}, kill),
      clients.length ? table : el("p", { class: "muted" }, "No listeners."),
    );
  }

  async function refresh() {
    if (busy) return;
    // Don't rebuild under someone typing a title.
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
        sections.push(mountSection(m, clients, mounts));
      }
      box.replaceChildren(...sections);
      none.hidden = mounts.length > 0;
    } catch (e) {
      result.textContent = `Could not reach the server: ${e.message}`;
    } finally {
      busy = false;
    }
  }

  refresh();
  setInterval(refresh, 5000);
  Agora.events(() => {}, () => refresh());
})();
