// The city map: an SVG in a fixed 1000×720 viewBox with an equirectangular
// projection fitted to the data (no tiles are reachable: a lat/lng grid is
// the basemap, with the platform's road network drawn on it when it has
// one). Layers: grid, roads, partitions (by owner), H3 hexes (by supply,
// demand or surge), active trips (pickup → drop-off), drivers (by status),
// legend.

import type { Cell, Driver, Partition, Ring, Snapshot, Trip } from "./api";

const NS = "http://www.w3.org/2000/svg";
const W = 1000;
const H = 720;
const PAD = 30;

export type HexMode = "supply" | "demand" | "surge";

export const driverColours: Record<string, string> = {
  AVAILABLE: "#16a34a",
  BUSY: "#ea580c",
  OFFLINE: "#6b7280",
};

export const tripColours: Record<string, string> = {
  REQUESTED: "#dc2626",
  DRIVER_ASSIGNED: "#2563eb",
  DRIVER_ARRIVED: "#0891b2",
  IN_PROGRESS: "#7c3aed",
};

const ownerPalette = ["#b45309", "#db2777", "#0d9488", "#6d28d9", "#65a30d", "#475569", "#c2410c", "#be123c"];

export function ownerColour(members: string[], id: string): string {
  const i = members.indexOf(id);
  if (i >= 0) return ownerPalette[i % ownerPalette.length];
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return ownerPalette[h % ownerPalette.length];
}

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function el<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

interface Bounds { minLat: number; maxLat: number; minLng: number; maxLng: number }

// A sequential scale from pale to strong for a metric in [0, max].
function ramp(mode: HexMode, v: number, max: number): string | null {
  if (mode === "surge") {
    if (v <= 1.0001) return null;
    const t = Math.min(1, (v - 1) / 1.5);
    return `hsl(${45 - 45 * t}, 95%, ${62 - 22 * t}%)`;
  }
  if (v <= 0) return null;
  const t = Math.min(1, v / Math.max(1, max));
  return mode === "supply" ? `hsl(152, 60%, ${80 - 45 * t}%)` : `hsl(265, 70%, ${82 - 42 * t}%)`;
}

export function hexValue(mode: HexMode, c: Cell): number {
  switch (mode) {
    case "supply":
      return c.supply_available + c.supply_busy;
    case "demand":
      return c.demand;
    case "surge":
      return c.surge;
  }
}

export class CityMap {
  private bounds: Bounds | null = null;
  private kx = 1;
  private ky = 1;
  private ox = 0;
  private oy = 0;
  private layers: Record<string, SVGGElement>;
  private roadSegments: number[] = [];
  onDriverClick: (d: Driver) => void = () => {};
  onTripClick: (t: Trip) => void = () => {};

  constructor(private svg: SVGSVGElement, private tooltip: HTMLElement) {
    const get = (id: string) => svg.querySelector<SVGGElement>("#" + id)!;
    this.layers = {
      grid: get("layer-grid"),
      roads: get("layer-roads"),
      partitions: get("layer-partitions"),
      hexes: get("layer-hexes"),
      trips: get("layer-trips"),
      drivers: get("layer-drivers"),
      legend: get("layer-legend"),
    };
  }

  private x(lng: number) { return this.ox + (lng - this.bounds!.minLng) * this.kx; }
  private y(lat: number) { return this.oy + (this.bounds!.maxLat - lat) * this.ky; }

  // fit keeps the current view unless the data left it (or is much smaller).
  private fit(s: Snapshot, trips: Trip[]) {
    const lats: number[] = [];
    const lngs: number[] = [];
    const add = (lat: number, lng: number) => { lats.push(lat); lngs.push(lng); };
    for (const d of s.drivers) add(d.lat, d.lng);
    for (const c of s.cells) for (const [lat, lng] of c.boundary ?? []) add(lat, lng);
    for (const t of trips) {
      if (t.pickup) add(t.pickup.lat, t.pickup.lng);
      if (t.dropoff) add(t.dropoff.lat, t.dropoff.lng);
    }
    if (lats.length === 0) {
      for (const p of s.partitions) for (const [lat, lng] of p.boundary ?? []) add(lat, lng);
    }
    if (lats.length === 0) return;
    const nb: Bounds = {
      minLat: Math.min(...lats), maxLat: Math.max(...lats),
      minLng: Math.min(...lngs), maxLng: Math.max(...lngs),
    };
    const b = this.bounds;
    const inside = b && nb.minLat >= b.minLat && nb.maxLat <= b.maxLat && nb.minLng >= b.minLng && nb.maxLng <= b.maxLng;
    const tooBig = b && (b.maxLat - b.minLat) > 3 * (nb.maxLat - nb.minLat + 1e-4);
    if (inside && !tooBig) return;
    const padLat = (nb.maxLat - nb.minLat) * 0.08 + 0.002;
    const padLng = (nb.maxLng - nb.minLng) * 0.08 + 0.002;
    this.bounds = { minLat: nb.minLat - padLat, maxLat: nb.maxLat + padLat, minLng: nb.minLng - padLng, maxLng: nb.maxLng + padLng };
    const midLat = (this.bounds.minLat + this.bounds.maxLat) / 2;
    const cos = Math.cos((midLat * Math.PI) / 180);
    const spanX = (this.bounds.maxLng - this.bounds.minLng) * cos;
    const spanY = this.bounds.maxLat - this.bounds.minLat;
    const k = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
    this.kx = k * cos;
    this.ky = k;
    this.ox = (W - spanX * k) / 2;
    this.oy = (H - spanY * k) / 2;
    this.drawGrid();
    this.drawRoads();
  }

  // setRoads takes the network as flat segments [lat1, lng1, lat2, lng2, …].
  setRoads(segments: number[]) {
    this.roadSegments = segments;
    if (this.bounds) this.drawRoads();
  }

  // drawRoads draws every segment inside the view as one path.
  private drawRoads() {
    const g = this.layers.roads;
    g.replaceChildren();
    const s = this.roadSegments;
    if (!s.length || !this.bounds) return;
    const b = this.bounds;
    const inView = (lat: number, lng: number) => lat >= b.minLat && lat <= b.maxLat && lng >= b.minLng && lng <= b.maxLng;
    const parts: string[] = [];
    for (let i = 0; i + 3 < s.length; i += 4) {
      if (!inView(s[i], s[i + 1]) && !inView(s[i + 2], s[i + 3])) continue;
      parts.push(`M${this.x(s[i + 1]).toFixed(1)},${this.y(s[i]).toFixed(1)}L${this.x(s[i + 3]).toFixed(1)},${this.y(s[i + 2]).toFixed(1)}`);
    }
    g.append(el("path", { d: parts.join(""), class: "roads", "data-testid": "roads", "data-segments": parts.length }));
  }

  private path(ring: Ring): string {
    return ring.map(([lat, lng], i) => `${i ? "L" : "M"}${this.x(lng).toFixed(1)},${this.y(lat).toFixed(1)}`).join("") + "Z";
  }

  private drawGrid() {
    const g = this.layers.grid;
    g.replaceChildren(el("rect", { x: 0, y: 0, width: W, height: H, class: "sea" }));
    const b = this.bounds!;
    const span = Math.max(b.maxLat - b.minLat, b.maxLng - b.minLng);
    const step = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1].find((s) => span / s <= 14) ?? 1;
    const dec = step < 0.01 ? 3 : 2;
    for (let lat = Math.ceil(b.minLat / step) * step; lat <= b.maxLat; lat += step) {
      const y = this.y(lat);
      g.append(el("line", { x1: 0, x2: W, y1: y, y2: y, class: "grid" }));
      const t = el("text", { x: 4, y: y - 3, class: "gridlabel" });
      t.textContent = `${lat.toFixed(dec)}°`;
      g.append(t);
    }
    for (let lng = Math.ceil(b.minLng / step) * step; lng <= b.maxLng; lng += step) {
      const x = this.x(lng);
      g.append(el("line", { x1: x, x2: x, y1: 0, y2: H, class: "grid" }));
      const t = el("text", { x: x + 3, y: H - 4, class: "gridlabel" });
      t.textContent = `${lng.toFixed(dec)}°`;
      g.append(t);
    }
  }

  render(s: Snapshot, trips: Trip[], mode: HexMode, opts: { partitions: boolean; trips: boolean }) {
    this.fit(s, trips);
    if (!this.bounds) return;
    const members = s.members.map((m) => m.id);

    // Partitions: outlines (and a faint fill) in the owner's colour.
    const pg = this.layers.partitions;
    pg.replaceChildren();
    if (opts.partitions) {
      for (const p of s.partitions) this.partition(pg, p, members);
    }

    // Hexes.
    const hg = this.layers.hexes;
    hg.replaceChildren();
    const max = Math.max(1, ...s.cells.map((c) => hexValue(mode, c)));
    for (const c of s.cells) {
      if (!c.boundary) continue;
      const v = hexValue(mode, c);
      const fill = ramp(mode, v, max);
      const p = el("path", {
        d: this.path(c.boundary), class: "hex" + (fill ? "" : " empty"), "data-testid": "hex", "data-cell": c.id,
        fill: fill ?? "none",
      });
      p.addEventListener("mousemove", (ev) =>
        this.tip(ev, `cell ${esc(c.id)}<br>supply ${c.supply_available} free / ${c.supply_busy} busy<br>demand ${c.demand} · surge ×${c.surge.toFixed(2)}`));
      p.addEventListener("mouseleave", () => this.untip());
      hg.append(p);
    }

    // Trips: pickup → drop-off.
    const tg = this.layers.trips;
    tg.replaceChildren();
    if (opts.trips) {
      for (const t of trips) {
        if (!t.pickup || !t.dropoff) continue;
        const colour = tripColours[t.state] ?? "#374151";
        const g = el("g", { "data-testid": "trip-line", "data-trip-id": t.id, class: "trip " + t.state });
        g.append(el("line", {
          x1: this.x(t.pickup.lng), y1: this.y(t.pickup.lat), x2: this.x(t.dropoff.lng), y2: this.y(t.dropoff.lat),
          stroke: colour, class: "tripline", "marker-end": "",
        }));
        g.append(el("circle", { cx: this.x(t.pickup.lng), cy: this.y(t.pickup.lat), r: 3.2, fill: colour, class: "pickup" }));
        g.append(el("rect", { x: this.x(t.dropoff.lng) - 2.5, y: this.y(t.dropoff.lat) - 2.5, width: 5, height: 5, fill: "#fff", stroke: colour, class: "dropoff" }));
        g.addEventListener("click", () => this.onTripClick(t));
        g.addEventListener("mousemove", (ev) => this.tip(ev, `trip ${esc(t.id.slice(0, 8))} · ${esc(t.state)}<br>rider ${esc(t.rider_id)}${t.driver_id ? "<br>driver " + esc(t.driver_id) : ""}`));
        g.addEventListener("mouseleave", () => this.untip());
        tg.append(g);
      }
    }

    // Drivers.
    const dg = this.layers.drivers;
    dg.replaceChildren();
    for (const d of s.drivers) {
      const c = el("circle", {
        cx: this.x(d.lng), cy: this.y(d.lat), r: 4.2, fill: driverColours[d.status] ?? "#111827",
        class: d.flagged ? "driver flagged" : "driver", "data-testid": "driver", "data-driver-id": d.id, "data-status": d.status,
      });
      c.addEventListener("click", () => this.onDriverClick(d));
      c.addEventListener("mousemove", (ev) => this.tip(ev, `${esc(d.id)}<br>${esc(d.status)} · ${esc(d.product)}<br>gateway ${esc(d.gateway)}${d.flagged ? "<br><b>flagged: implausible samples</b>" : ""}`));
      c.addEventListener("mouseleave", () => this.untip());
      dg.append(c);
    }

    this.legend(mode, max, s, opts.partitions);
  }

  private partition(g: SVGGElement, p: Partition, members: string[]) {
    if (!p.boundary) return;
    const colour = ownerColour(members, p.owner.id);
    const path = el("path", {
      d: this.path(p.boundary), class: "partition", stroke: colour, fill: colour,
      "data-testid": "partition", "data-partition": p.id, "data-owner": p.owner.id,
    });
    path.addEventListener("mousemove", (ev) => this.tip(ev, `partition ${esc(p.id)}<br>owner ${esc(p.owner.id)}<br>${p.drivers} drivers indexed`));
    path.addEventListener("mouseleave", () => this.untip());
    g.append(path);
  }

  private legend(mode: HexMode, max: number, s: Snapshot, partitions: boolean) {
    const g = this.layers.legend;
    g.replaceChildren();
    const x0 = W - 218;
    const title = mode === "surge" ? "surge ×" : mode === "supply" ? "drivers per hex" : "open requests per hex";
    const box = el("rect", { x: x0 - 10, y: 10, width: 218, height: 0, class: "legendbox", rx: 6 });
    g.append(box);
    let y = 30;
    const text = (x: number, yy: number, s: string, cls = "legendtext") => {
      const t = el("text", { x, y: yy, class: cls });
      t.textContent = s;
      g.append(t);
    };
    text(x0, y, "hexes: " + title, "legendtitle");
    y += 8;
    const steps = 5;
    for (let i = 0; i < steps; i++) {
      const v = mode === "surge" ? 1 + ((i + 1) / steps) * 1.5 : Math.max(1, Math.round(((i + 1) / steps) * max));
      g.append(el("rect", { x: x0 + i * 38, y, width: 36, height: 12, fill: ramp(mode, v, max) ?? "none", class: "legendswatch" }));
      text(x0 + i * 38 + 2, y + 24, mode === "surge" ? v.toFixed(1) : String(v), "legendsmall");
    }
    y += 44;
    text(x0, y, "drivers", "legendtitle");
    y += 6;
    let x = x0;
    for (const [status, colour] of Object.entries(driverColours)) {
      g.append(el("circle", { cx: x + 5, cy: y + 6, r: 4.5, fill: colour }));
      text(x + 13, y + 10, status.toLowerCase());
      x += 70;
    }
    y += 26;
    text(x0, y, "trips (pickup ● → drop-off ■)", "legendtitle");
    y += 6;
    x = x0;
    let col = 0;
    for (const [state, colour] of Object.entries(tripColours)) {
      const cx = x + (col % 2) * 104;
      const cy = y + Math.floor(col / 2) * 16;
      g.append(el("line", { x1: cx, y1: cy + 6, x2: cx + 16, y2: cy + 6, stroke: colour, "stroke-width": 2.5 }));
      text(cx + 20, cy + 10, state.toLowerCase().replace("driver_", ""));
      col++;
    }
    y += 2 * 16 + 14;
    if (partitions) {
      text(x0, y, "partitions (outline = owner)", "legendtitle");
      y += 6;
      s.members.slice(0, 4).forEach((m, i) => {
        const colour = ownerColour(s.members.map((mm) => mm.id), m.id);
        g.append(el("rect", { x: x0, y: y + i * 16, width: 14, height: 10, fill: colour, "fill-opacity": 0.25, stroke: colour }));
        text(x0 + 20, y + i * 16 + 9, m.address);
      });
      y += Math.min(4, s.members.length) * 16 + 4;
    }
    box.setAttribute("height", String(y - 10));
  }

  private tip(ev: MouseEvent, html: string) {
    this.tooltip.innerHTML = html;
    this.tooltip.hidden = false;
    const r = this.svg.getBoundingClientRect();
    this.tooltip.style.left = `${ev.clientX - r.left + 12}px`;
    this.tooltip.style.top = `${ev.clientY - r.top + 12}px`;
  }

  private untip() { this.tooltip.hidden = true; }
}
