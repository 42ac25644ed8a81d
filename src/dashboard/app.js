// The dashboard's script: polls the health port's read-only JSON and renders it as text.
// Nothing from the server is ever parsed as markup: every value goes through textContent.
"use strict";

const POLL_MS = 1000;
let previous = null; // { at, totals: Map(routeKey -> {requests, errors}) }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c);
    else if (c && typeof c === "object" && "node" in c) { td.appendChild(c.node); if (c.cls) td.className = c.cls; }
    else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = el("td", "none", "muted");
    td.colSpan = document.querySelectorAll("#" + tableId + " th").length;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function backendName(b) {
  if (!b) return "";
  return b.namespace ? b.namespace + "/" + b.service + ":" + b.port : b.name;
}

function endpoints(b, live) {
  const span = document.createElement("span");
  if (!b || !b.endpoints || b.endpoints.length === 0) {
    span.appendChild(el("span", b && b.unavailable ? "none (" + b.unavailable + ")" : "none", "none"));
    return span;
  }
  for (const addr of b.endpoints) {
    const h = (live && live.endpoints && live.endpoints[addr]) || {};
    const tag = el("span", addr, "ep " + (h.ejected ? "ejected" : "healthy"));
    const parts = [h.ejected ? "ejected" : "healthy"];
    if (h.inFlight) parts.push(h.inFlight + " in flight");
    if (h.latencyMs !== null && h.latencyMs !== undefined) parts.push(h.latencyMs.toFixed(1) + " ms");
    if (h.ejections) parts.push(h.ejections + " ejections");
    tag.title = parts.join(", ");
    span.appendChild(tag);
  }
  return span;
}

function routeKey(host, path, namespace, ingress) {
  return [host, path, namespace, ingress].join("\u0000");
}

function rates(live) {
  const now = Date.now();
  const totals = new Map();
  for (const r of (live && live.routes) || []) {
    totals.set(routeKey(r.host, r.path, r.namespace, r.ingress), { requests: r.requests, errors: r.errors });
  }
  const out = new Map();
  if (previous) {
    const dt = Math.max((now - previous.at) / 1000, 0.001);
    for (const [k, t] of totals) {
      const p = previous.totals.get(k) || { requests: 0, errors: 0 };
      const dr = Math.max(t.requests - p.requests, 0);
      const de = Math.max(t.errors - p.errors, 0);
      out.set(k, { rps: dr / dt, errShare: dr > 0 ? de / dr : 0, errors: t.errors, requests: t.requests });
    }
  } else {
    for (const [k, t] of totals) out.set(k, { rps: 0, errShare: 0, errors: t.errors, requests: t.requests });
  }
  previous = { at: now, totals };
  return out;
}

function renderRoutes(config, live, rate) {
  const rows = [];
  for (const h of config.hosts || []) {
    const routes = h.routes || [];
    for (const r of routes) {
      const [ns, name] = (r.ingress || "/").split("/");
      const st = rate.get(routeKey(h.host, r.path, ns, name));
      const tr = row([
        h.host + (h.tls ? " (TLS)" : ""),
        r.path,
        r.pathType,
        r.source || r.ingress,
        backendName(r.backend),
        endpoints(r.backend, live),
        { node: el("span", st ? st.rps.toFixed(1) : "0.0"), cls: "num" },
        { node: el("span", st ? st.errors + (st.errShare > 0 ? " (" + (st.errShare * 100).toFixed(0) + "%)" : "") : "0"), cls: "num" },
      ]);
      tr.dataset.host = h.host;
      tr.dataset.path = r.path;
      rows.push(tr);
    }
    if (h.defaultBackend) {
      const tr = row([h.host, "(default)", "", h.defaultBackend.source, backendName(h.defaultBackend.backend), endpoints(h.defaultBackend.backend, live), "", ""]);
      tr.dataset.host = h.host;
      rows.push(tr);
    }
  }
  if (config.defaultBackend) {
    rows.push(row(["(any)", "(default backend)", "", config.defaultBackend.source, backendName(config.defaultBackend.backend), endpoints(config.defaultBackend.backend, live), "", ""]));
  }
  document.getElementById("route-count").textContent = "(" + rows.length + ")";
  fill("routes", rows);
}

function renderCertificates(config) {
  const now = Date.now();
  fill("certificates", (config.certificates || []).map((c) => {
    // Seconds since the epoch, or a date string.
    const expires = c.notAfter === null || c.notAfter === undefined ? null : new Date(typeof c.notAfter === "number" ? c.notAfter * 1000 : c.notAfter);
    let cls = "";
    let text = expires && !isNaN(expires) ? expires.toISOString().slice(0, 10) : String(c.notAfter || "");
    if (expires && !isNaN(expires)) {
      const days = Math.floor((expires - now) / 86400000);
      text += " (" + (days < 0 ? "expired" : days + " days") + ")";
      cls = days < 0 ? "expired" : days < 21 ? "expiring" : "";
    }
    return row([(c.hosts || []).join(", "), c.secret || "(generated)", c.subject || "", c.issuer || "", { node: el("span", text), cls }]);
  }));
}

function renderDiagnostics(config) {
  const diags = config.diagnostics || [];
  document.getElementById("diag-count").textContent = "(" + diags.length + ")";
  fill("diagnostics", diags.map((d) => row([{ node: el("span", d.severity), cls: "sev-" + d.severity }, d.object, d.field || "", d.reason, d.message])));
  const list = document.getElementById("manifest-errors");
  list.replaceChildren(...(config.manifestErrors || []).map((e) => el("li", typeof e === "string" ? e : JSON.stringify(e))));
}

function render(config, live) {
  const rate = rates(live);
  renderRoutes(config, live, rate);
  renderCertificates(config);
  renderDiagnostics(config);
  fill("l4", (config.l4Services || []).map((s) => row([s.name, s.protocol, s.address, s.source, backendName(s.backend), endpoints(s.backend, live)])));
  fill("passthrough", (config.sslPassthrough || []).map((p) => row([p.host, backendName(p.backend), endpoints(p.backend, live)])));
  const hosts = (config.hosts || []).length;
  const errors = (config.diagnostics || []).filter((d) => d.severity === "Error").length;
  document.getElementById("summary").textContent = hosts + " hosts, " + (config.l4Services || []).length + " TCP/UDP services, " + errors + " errors";
}

function setState(ok, text) {
  const s = document.getElementById("state");
  s.textContent = text;
  s.className = "pill " + (ok ? "ok" : "bad");
}

async function poll() {
  try {
    const [config, live] = await Promise.all([
      fetch("/debug/config", { cache: "no-store" }).then((r) => r.json()),
      fetch("/debug/live", { cache: "no-store" }).then((r) => r.json()),
    ]);
    render(config, live);
    setState(true, "live " + new Date().toLocaleTimeString());
  } catch (e) {
    setState(false, "unreachable: " + e.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("explain-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const url = document.getElementById("explain-url").value.trim();
  const out = document.getElementById("explain-out");
  if (!url) return;
  try {
    const r = await fetch("/debug/explain?format=text&url=" + encodeURIComponent(url), { cache: "no-store" });
    out.textContent = await r.text();
  } catch (e) {
    out.textContent = "error: " + e.message;
  }
});

poll();
