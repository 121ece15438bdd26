// Types for restream.js. The wire messages follow schemas/protocol/*.schema.json.

export declare const PROTOCOL_VERSION: 1;

export type Item = Record<string, unknown>;
export type Params = Record<string, string | number | boolean>;

export interface PatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

interface ChannelMessageBase {
  channel: string;
  /** The channel's full params: defaults included, values as strings. */
  params: Record<string, string>;
  seq: number;
}
export interface ReadyMessage { type: 'ready'; protocol: number }
export interface SubscribedMessage { type: 'subscribed' | 'unsubscribed'; channel: string; params: Record<string, string>; ref?: string | number }
export interface SnapshotMessage extends ChannelMessageBase { type: 'snapshot'; items: Item[]; reset?: true }
export interface ItemMessage extends ChannelMessageBase { type: 'new' | 'removed'; item: Item }
export interface UpdatedMessage extends ChannelMessageBase { type: 'updated'; item: Item; patch: PatchOperation[] }
export type FailureCode = 'upstream_unavailable' | 'upstream_rate_limited' | 'fetcher_failed' | 'fetcher_unavailable' | 'keys_unavailable'
  | 'url_not_allowed' | 'feed_too_large' | 'transform_failed' | 'host_budget_exhausted';
export interface StatusMessage extends ChannelMessageBase {
  type: 'status';
  status: 'ok' | 'degraded';
  code?: FailureCode;
  error?: string;
  retry_in?: number;
}
export type ErrorCode = 'bad_message' | 'unknown_action' | 'unknown_channel' | 'invalid_params' | 'not_subscribed'
  | 'too_many_subscriptions' | 'unauthorized' | 'too_many_channels' | 'rate_limited'
  | 'too_many_params' | 'param_too_long' | 'url_not_allowed';
export interface ErrorMessage { type: 'error'; code: ErrorCode; message: string; ref?: string | number; retry_after?: number }
export type ServerMessage = ReadyMessage | SubscribedMessage | SnapshotMessage | ItemMessage | UpdatedMessage | StatusMessage | ErrorMessage;

export type ChannelEventMessage = SnapshotMessage | ItemMessage | UpdatedMessage;

export interface Change {
  type: 'snapshot' | 'new' | 'updated' | 'removed';
  seq: number;
  /** The message the change came from. */
  message: ChannelEventMessage;
  /** Events: the item's id key and its new (or, for `removed`, last) version. */
  id?: string | null;
  item?: Item;
  /** Events: the version held before; snapshots: the whole previous map. */
  previous?: Item | Map<string, Item>;
  /** `updated`: the patch did not turn the held item into the carried one (the carried one is kept). */
  patchMismatch?: boolean;
  /** Snapshots: the items, and whether it was a reset (a `since` that could not be served). */
  items?: Item[];
  reset?: boolean;
}

export interface ClientError {
  code: ErrorCode | 'bad_server_message' | 'connect_failed';
  message: string;
  retryAfter?: number;
  channel?: Channel;
}

export interface ApplyResult {
  applied: boolean;
  reason?: 'no_snapshot' | 'duplicate' | 'gap' | 'not_an_event';
  expected?: number;
  change?: Omit<Change, 'message'>;
}

/** A channel's items kept by the seq rule; pure, usable on its own. */
export declare class ChannelState {
  constructor(idField?: string);
  idField: string;
  seq: number | null;
  items: Map<string, Item>;
  apply(message: ServerMessage): ApplyResult;
}

type Unlisten = () => void;

export interface ChannelEvents {
  snapshot: Change; new: Change; updated: Change; removed: Change; change: Change;
  status: StatusMessage;
  error: ClientError;
  state: Channel['status'];
  subscribed: SubscribedMessage;
  unsubscribed: SubscribedMessage;
  ignored: { reason: 'no_snapshot' | 'duplicate' | 'gap'; message: ServerMessage };
}

export declare class Channel {
  readonly name: string;
  readonly params: Params;
  /** The full params the server reported (defaults included), once known. */
  readonly serverParams: Record<string, string> | null;
  readonly items: Item[];
  readonly seq: number | null;
  readonly status: 'pending' | 'subscribed' | 'failed' | 'closed';
  readonly health: 'unknown' | 'ok' | 'degraded';
  readonly lastStatus: StatusMessage | null;
  readonly lastError: ClientError | null;
  /** Seqs of the events applied, in order (the last 10,000). */
  readonly applied: number[];
  readonly state: ChannelState;
  get(id: string | number): Item | undefined;
  on<K extends keyof ChannelEvents>(type: K, listener: (value: ChannelEvents[K]) => void): Unlisten;
  off<K extends keyof ChannelEvents>(type: K, listener: (value: ChannelEvents[K]) => void): void;
  unsubscribe(): void;
}

export interface ClientOptions {
  /** A JWT for the connection (sent as `?token=`). */
  token?: string;
  /** `auto` (default): WebSocket, then SSE when it cannot open; or force one. */
  transport?: 'auto' | 'ws' | 'sse';
  /** Failed WebSocket opens (never reaching `ready`) before `auto` falls back to SSE; default 3.
   *  Only while no WebSocket has opened yet: after one has, failures are outages and WebSocket is retried. */
  wsAttemptsBeforeSse?: number;
  /** The HTTP base for SSE; derived from the WebSocket URL. */
  httpUrl?: string;
  backoff?: { initialMs?: number; maxMs?: number };
  WebSocket?: unknown;
  EventSource?: unknown;
}

export interface SubscribeOptions {
  /** The channel's `id_field` from the catalog (`GET /channels`); default `id`. */
  idField?: string;
  /** A channel token for this subscribe alone. */
  token?: string;
  /** Resume after this seq (the first subscribe only; later ones resume from what is held). */
  since?: number;
}

export interface ClientEvents {
  state: RestreamClient['state'];
  transport: 'ws' | 'sse';
  error: ClientError;
  message: ServerMessage;
  ready: ReadyMessage;
}

export declare class RestreamClient {
  constructor(url?: string, options?: ClientOptions);
  readonly url: string;
  readonly httpUrl: string;
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  readonly transport: 'ws' | 'sse';
  readonly channels: Set<Channel>;
  /** Reconnect attempts made so far. */
  readonly reconnects: number;
  subscribe(name: string, params?: Params, options?: SubscribeOptions): Channel;
  unsubscribe(channel: Channel): void;
  close(): void;
  on<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): Unlisten;
  off<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): void;
}

export declare function backoffDelay(attempt: number, options?: { initialMs?: number; maxMs?: number; random?: () => number }): number;
export declare function applyPatch<T = unknown>(doc: T, patch: PatchOperation[]): unknown;
export declare function deepEqual(a: unknown, b: unknown): boolean;
export declare function idKey(id: unknown): string | null;
export declare class PatchError extends Error {}

export default RestreamClient;
