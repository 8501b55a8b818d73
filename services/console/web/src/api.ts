// The console's JSON API (see services/console/model.go for the shapes).

export interface LatLng { lat: number; lng: number }
export type Ring = [number, number][];

export interface Trip {
  id: string;
  rider_id: string;
  driver_id?: string;
  state: string;
  product: string;
  pickup?: LatLng;
  dropoff?: LatLng;
  created_at?: string;
  assigned_at?: string;
  ended_at?: string;
  cancelled_by?: string;
  end_reason?: string;
  version: number;
}

export interface TripEvent {
  id: string;
  trip_id: string;
  type: string;
  from_state: string;
  to_state: string;
  actor: string;
  actor_id?: string;
  reason?: string;
  driver_id?: string;
  occurred_at?: string;
  trip?: Trip;
}

export interface Member { id: string; address: string }
export interface Partition { id: string; owner: Member; drivers: number; boundary: Ring | null }
export interface Cell {
  id: string;
  supply_available: number;
  supply_busy: number;
  demand: number;
  surge: number;
  boundary: Ring | null;
}
export interface Driver {
  id: string;
  lat: number;
  lng: number;
  heading: number;
  status: string;
  product: string;
  gateway: string;
  flagged?: boolean;
}
export interface KPIs {
  requests_per_min: number;
  match_rate: number | null;
  time_to_match_p50_s: number | null;
  time_to_match_p95_s: number | null;
  matched: number;
  unmatched: number;
  pending: number;
  window_s: number;
  drivers_online: number;
  drivers_busy: number;
  workers: {
    offers_sent: number;
    offers_accepted: number;
    offers_declined: number;
    offers_expired: number;
    no_driver: number;
    in_flight: number;
  };
}
export interface Flagged { id: string; refused: number; reason: string; at: string; gateway: string }
export interface Snapshot {
  time: string;
  partition_resolution: number;
  index_resolution: number;
  members: Member[];
  partitions: Partition[];
  cells: Cell[];
  drivers: Driver[];
  drivers_truncated: boolean;
  flagged: Flagged[];
  active_trips: Trip[];
  kpis: KPIs;
  errors: string[];
}

export class APIError extends Error {
  constructor(public code: number, message: string) {
    super(message);
  }
}

// The dispatcher's bearer token (from the operator's identity provider), kept
// in this browser. Development consoles need none.
const tokenKey = "hexride_token";
export const session = {
  token: (): string => localStorage.getItem(tokenKey) ?? "",
  set: (t: string) => (t ? localStorage.setItem(tokenKey, t) : localStorage.removeItem(tokenKey)),
};

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: "application/json" } };
  const token = session.token();
  if (token) (init.headers as Record<string, string>)["Authorization"] = "Bearer " + token;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
    (init.headers as Record<string, string>)["Idempotency-Key"] = crypto.randomUUID();
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new APIError(resp.status, (data as { error?: string }).error ?? resp.statusText);
  return data as T;
}

export interface Roads { attribution?: string; segments: number[] }

export const api = {
  kpis: () => call<KPIs>("GET", "api/kpis"),
  roads: () => call<Roads>("GET", "api/roads"),
  trips: (params: URLSearchParams) =>
    call<{ trips: Trip[]; next_page_token?: string }>("GET", "api/trips?" + params.toString()),
  events: (id: string) => call<{ events: TripEvent[] }>("GET", `api/trips/${encodeURIComponent(id)}/events`),
  cancel: (id: string, reason: string) =>
    call<{ trip: Trip }>("POST", `api/trips/${encodeURIComponent(id)}/cancel`, { reason }),
  redispatch: (id: string, reason: string) =>
    call<{ trip: Trip; dispatch: { partition: string } }>("POST", `api/trips/${encodeURIComponent(id)}/redispatch`, { reason }),
  offline: (id: string, reason: string) =>
    call<{ driver_id: string; gateway: string }>("POST", `api/drivers/${encodeURIComponent(id)}/offline`, { reason }),
};
