import "./style.css";
import { api, APIError, session, type Driver, type KPIs, type Snapshot, type Trip, type TripEvent } from "./api";
import { CityMap, esc, ownerColour, type HexMode } from "./map";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const activeStates = new Set(["REQUESTED", "DRIVER_ASSIGNED", "DRIVER_ARRIVED", "IN_PROGRESS"]);

const state = {
  snapshot: null as Snapshot | null,
  snapshots: 0,
  events: 0,
  mode: "supply" as HexMode,
  active: new Map<string, Trip>(), // active trips: snapshot, then trip events
  rows: new Map<string, Trip>(), // the trip table
  selected: null as string | null,
  nextPage: "" as string,
};

const map = new CityMap($("map") as unknown as SVGSVGElement, $("tooltip"));
map.onDriverClick = (d) => selectDriver(d);
map.onTripClick = (t) => void selectTrip(t.id);

// ---- status line ----
function status(msg: string, kind: "ok" | "error" | "info" = "info") {
  const s = $("status");
  s.textContent = msg;
  s.className = "status " + kind;
  s.dataset.kind = kind;
}

// ---- KPIs ----
const fmtPct = (v: number | null) => (v === null ? "–" : `${(v * 100).toFixed(0)}%`);
const fmtSec = (v: number | null) => (v === null ? "–" : v < 10 ? `${v.toFixed(1)} s` : `${v.toFixed(0)} s`);

function renderKPIs(k: KPIs) {
  const tiles: [string, string, string, string?][] = [
    ["kpi-requests", "requests / min", String(k.requests_per_min)],
    ["kpi-match-rate", "match rate", fmtPct(k.match_rate), `${k.matched} matched · ${k.unmatched} not · ${k.pending} pending (${Math.round(k.window_s / 60)} min)`],
    ["kpi-ttm-p50", "time to match p50", fmtSec(k.time_to_match_p50_s)],
    ["kpi-ttm-p95", "time to match p95", fmtSec(k.time_to_match_p95_s)],
    ["kpi-online", "drivers online", String(k.drivers_online)],
    ["kpi-busy", "drivers busy", String(k.drivers_busy)],
    ["kpi-accepted", "offers accepted", String(k.workers.offers_accepted)],
    ["kpi-declined", "offers declined", String(k.workers.offers_declined)],
    ["kpi-expired", "offers timed out", String(k.workers.offers_expired)],
  ];
  $("kpis").innerHTML = tiles
    .map(([id, label, value, hint]) =>
      `<div class="tile" data-testid="${id}" title="${esc(hint ?? "")}"><div class="value">${esc(value)}</div><div class="label">${esc(label)}</div></div>`)
    .join("");
}

// ---- members / partitions ----
function renderMembers(s: Snapshot) {
  const ids = s.members.map((m) => m.id);
  const owned = new Map<string, number>();
  for (const p of s.partitions) owned.set(p.owner.id, (owned.get(p.owner.id) ?? 0) + 1);
  $("members").innerHTML = s.members
    .map((m) => `<li data-testid="member" data-member-id="${esc(m.id)}"><span class="swatch" style="background:${ownerColour(ids, m.id)}"></span>
      <code>${esc(m.address)}</code> <span class="muted">${esc(m.id)}</span> · ${owned.get(m.id) ?? 0} partitions</li>`)
    .join("") + (s.errors.length ? `<li class="error">${s.errors.map(esc).join("<br>")}</li>` : "");
  $("partition-summary").textContent = `${s.members.length} workers · ${s.partitions.length} partitions with drivers (res ${s.partition_resolution}) · hexes res ${s.index_resolution}`;
}

// ---- map ----
let drawQueued = false;
function draw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    const s = state.snapshot;
    if (!s) return;
    const trips = [...state.active.values()];
    map.render(s, trips, state.mode, {
      partitions: $<HTMLInputElement>("show-partitions").checked,
      trips: $<HTMLInputElement>("show-trips").checked,
    });
    $("count-hexes").textContent = String(s.cells.length);
    $("count-drivers").textContent = String(s.drivers.length);
    $("count-trips").textContent = String(trips.length);
    $("snapshot-seq").textContent = String(state.snapshots);
  });
}

function renderFlagged(s: Snapshot) {
  $("flagged").innerHTML = s.flagged.length
    ? s.flagged
        .map((f) => `<li data-testid="flagged-driver" data-driver-id="${esc(f.id)}"><code>${esc(f.id)}</code> · ${f.refused} refused · last ${esc(f.reason)} at ${esc(shortTime(f.at))}</li>`)
        .join("")
    : `<li class="muted">none</li>`;
}

function onSnapshot(s: Snapshot) {
  state.snapshot = s;
  state.snapshots++;
  state.active = new Map(s.active_trips.map((t) => [t.id, t]));
  renderKPIs(s.kpis);
  renderMembers(s);
  renderFlagged(s);
  draw();
}

// ---- trip table ----
const shortTime = (iso?: string) => (iso ? new Date(iso).toLocaleTimeString() : "");

function rowHTML(t: Trip): string {
  return `<td><code>${esc(t.id.slice(0, 8))}</code></td><td><span class="state ${esc(t.state)}">${esc(t.state.toLowerCase().replace(/_/g, " "))}</span></td>
    <td>${esc(t.rider_id)}</td><td>${esc(t.driver_id ?? "")}</td><td>${shortTime(t.created_at)}</td>`;
}

function renderRow(t: Trip, prepend = false) {
  let tr = document.querySelector<HTMLTableRowElement>(`tr[data-trip-id="${CSS.escape(t.id)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.setAttribute("data-testid", "trip-row");
    tr.dataset.tripId = t.id;
    tr.addEventListener("click", () => void selectTrip(t.id));
    const body = $("trip-rows");
    if (prepend) body.prepend(tr);
    else body.append(tr);
  }
  tr.dataset.state = t.state;
  tr.classList.toggle("selected", t.id === state.selected);
  tr.innerHTML = rowHTML(t);
}

function filterMatches(t: Trip): boolean {
  const f = $<HTMLSelectElement>("state-filter").value;
  if (f === "") return true;
  if (f === "active") return activeStates.has(t.state);
  return t.state === f;
}

function tableParams(): URLSearchParams {
  const p = new URLSearchParams({ page_size: "50" });
  const f = $<HTMLSelectElement>("state-filter").value;
  if (f) p.set("state", f);
  const q = $<HTMLInputElement>("search").value.trim();
  if (q) p.set("q", q);
  return p;
}

let tableSeq = 0;
async function loadTrips(append = false) {
  const seq = ++tableSeq;
  const p = tableParams();
  if (append && state.nextPage) p.set("page_token", state.nextPage);
  try {
    const page = await api.trips(p);
    if (seq !== tableSeq) return;
    if (!append) {
      state.rows.clear();
      $("trip-rows").replaceChildren();
    }
    for (const t of page.trips) {
      state.rows.set(t.id, t);
      renderRow(t);
    }
    state.nextPage = page.next_page_token ?? "";
    $("more").hidden = !state.nextPage;
  } catch (e) {
    status(`trips: ${(e as Error).message}`, "error");
  }
}

// ---- trip detail ----
function eventHTML(e: TripEvent): string {
  const who = e.actor_id ? `${e.actor.toLowerCase()} ${e.actor_id}` : e.actor.toLowerCase();
  return `<li data-testid="trip-event" data-type="${esc(e.type)}" data-event-id="${esc(e.id)}"><span class="time">${shortTime(e.occurred_at)}</span>
    <b>${esc(e.type.toLowerCase().replace(/_/g, " "))}</b> ${esc(e.from_state)} → ${esc(e.to_state)}
    <span class="muted">by ${esc(who)}${e.driver_id ? ` · driver ${esc(e.driver_id)}` : ""}${e.reason ? ` · “${esc(e.reason)}”` : ""}</span></li>`;
}

async function selectTrip(id: string) {
  state.selected = id;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  document.querySelector(`tr[data-trip-id="${CSS.escape(id)}"]`)?.classList.add("selected");
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  const t = state.rows.get(id) ?? state.active.get(id);
  setDetailState(t?.state ?? "");
  try {
    const { events } = await api.events(id);
    if (state.selected !== id) return;
    $("events").innerHTML = events.map(eventHTML).join("");
    const last = events[events.length - 1];
    if (last) setDetailState(last.to_state);
  } catch (e) {
    status(`events: ${(e as Error).message}`, "error");
  }
}

function setDetailState(s: string) {
  const el = $("detail-state");
  el.textContent = s.toLowerCase().replace(/_/g, " ");
  el.className = "state " + s;
  el.dataset.state = s;
  $<HTMLButtonElement>("btn-cancel").disabled = !activeStates.has(s);
  $<HTMLButtonElement>("btn-redispatch").disabled = s !== "REQUESTED";
}

// ---- live stream ----
function onTripEvent(e: TripEvent) {
  state.events++;
  const t = e.trip;
  if (t) {
    if (activeStates.has(t.state)) state.active.set(t.id, t);
    else state.active.delete(t.id);
    const q = $<HTMLInputElement>("search").value.trim();
    if (state.rows.has(t.id)) {
      state.rows.set(t.id, t);
      renderRow(t);
    } else if (e.type === "CREATED" && !q && filterMatches(t)) {
      state.rows.set(t.id, t);
      renderRow(t, true);
      const body = $("trip-rows");
      while (body.children.length > 100) {
        const last = body.lastElementChild as HTMLElement;
        state.rows.delete(last.dataset.tripId ?? "");
        last.remove();
      }
    }
  }
  if (e.trip_id === state.selected && !document.querySelector(`[data-event-id="${CSS.escape(e.id)}"]`)) {
    $("events").insertAdjacentHTML("beforeend", eventHTML(e));
    setDetailState(e.to_state);
  }
  draw();
}

function connect() {
  const live = $("live");
  const token = session.token();
  const es = new EventSource(token ? "api/live?access_token=" + encodeURIComponent(token) : "api/live");
  es.addEventListener("open", () => {
    live.textContent = "live";
    live.className = "live on";
  });
  es.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  });
  es.addEventListener("snapshot", (m) => onSnapshot(JSON.parse((m as MessageEvent).data)));
  es.addEventListener("trip", (m) => onTripEvent(JSON.parse((m as MessageEvent).data)));
}

// ---- actions ----
function selectDriver(d: Driver) {
  $<HTMLInputElement>("driver-id").value = d.id;
  $("driver-info").textContent = `${d.id}: ${d.status.toLowerCase()} · ${d.product.toLowerCase()} · gateway ${d.gateway} · ${d.lat.toFixed(5)}, ${d.lng.toFixed(5)}`;
}

async function act(label: string, fn: () => Promise<string>) {
  status(`${label}…`);
  try {
    status(await fn(), "ok");
  } catch (e) {
    status(`${label} failed: ${(e as Error).message}`, "error");
  }
}

function wire() {
  document.querySelectorAll<HTMLButtonElement>(".seg button").forEach((b) =>
    b.addEventListener("click", () => {
      state.mode = b.dataset.mode as HexMode;
      document.querySelectorAll(".seg button").forEach((o) => o.classList.toggle("on", o === b));
      draw();
    }));
  $("show-partitions").addEventListener("change", draw);
  $("show-trips").addEventListener("change", draw);
  $("state-filter").addEventListener("change", () => void loadTrips());
  let t: number | undefined;
  $("search").addEventListener("input", () => {
    clearTimeout(t);
    t = window.setTimeout(() => void loadTrips(), 250);
  });
  $("more").addEventListener("click", () => void loadTrips(true));
  const reason = () => $<HTMLInputElement>("reason").value.trim();
  $("btn-cancel").addEventListener("click", () => {
    const id = state.selected;
    if (!id) return;
    void act("cancel", async () => {
      const r = await api.cancel(id, reason());
      setDetailState(r.trip.state);
      return `trip ${id.slice(0, 8)} cancelled`;
    });
  });
  $("btn-redispatch").addEventListener("click", () => {
    const id = state.selected;
    if (!id) return;
    void act("re-dispatch", async () => {
      const r = await api.redispatch(id, reason());
      return `trip ${id.slice(0, 8)} re-dispatched to partition ${r.dispatch.partition}`;
    });
  });
  $("btn-offline").addEventListener("click", () => {
    const id = $<HTMLInputElement>("driver-id").value.trim();
    if (!id) {
      status("pick a driver on the map or type its id", "error");
      return;
    }
    void act("take offline", async () => {
      const r = await api.offline(id, "");
      return `driver ${r.driver_id} taken offline (gateway ${r.gateway})`;
    });
  });
}

// start connects once the console accepts this browser: with no token (a
// development console) or with the dispatcher token the operator signs in
// with.
async function start() {
  try {
    await api.kpis();
  } catch (e) {
    if (e instanceof APIError && (e.code === 401 || e.code === 403)) {
      const form = $<HTMLFormElement>("login");
      form.hidden = false;
      $("login-error").textContent = session.token() ? (e as Error).message : "";
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        session.set($<HTMLInputElement>("token").value.trim());
        location.reload();
      });
      return;
    }
  }
  connect();
  void loadTrips();
  void loadRoads();
}

// loadRoads draws the platform's road network and its data's notice.
async function loadRoads() {
  try {
    const r = await api.roads();
    map.setRoads(r.segments);
    const note = $("map-attribution");
    note.textContent = r.attribution ?? "";
    note.hidden = !r.attribution;
  } catch {
    // No network drawn: the map still works on its grid.
  }
}

wire();
void start();
