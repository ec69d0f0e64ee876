// A typed ComfyUI client, the way a TypeScript front end or worker writes one. Every type comes from the replay
// server's OpenAPI document (`comfy-cassettes openapi`, then `npm run generate`): ComfyUI's own routes and the
// admin API under /__cassettes__ alike.
import type { components } from "./generated/comfy-api";

export type Schemas = components["schemas"];
export type ApiPrompt = Schemas["ApiPrompt"];
export type PromptQueued = Schemas["PromptQueued"];
export type History = Schemas["History"];
export type WsMessage = Schemas["WsMessage"];
export type FaultRule = Schemas["StatusRule"] | Schemas["DelayRule"] | Schemas["ExecutionErrorRule"] | Schemas["DownRule"];
export type Refusal = Schemas["Refusal"];

export class HttpError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(`HTTP ${status}: ${JSON.stringify(body)}`);
  }
}

async function json<T>(response: Response): Promise<T> {
  const text = await response.text();
  const body = text ? JSON.parse(text) : undefined;
  if (!response.ok) throw new HttpError(response.status, body);
  return body as T;
}

export class ComfyClient {
  readonly clientId = "ts-" + Math.random().toString(16).slice(2);
  attempts = 0;

  constructor(readonly base: string) {}

  // POST /prompt, retrying 503s (a busy or restarting ComfyUI) with a short back-off.
  async submit(prompt: ApiPrompt, retries = 5): Promise<PromptQueued> {
    for (this.attempts = 1; ; this.attempts++) {
      const response = await fetch(`${this.base}/prompt`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt, client_id: this.clientId }),
      });
      if (response.status === 503 && this.attempts < retries) {
        await new Promise((resolve) => setTimeout(resolve, 10 * this.attempts));
        continue;
      }
      return json<PromptQueued>(response);
    }
  }

  async history(promptId: string): Promise<History> {
    return json<History>(await fetch(`${this.base}/history/${encodeURIComponent(promptId)}`));
  }

  async interrupt(promptId: string): Promise<void> {
    await fetch(`${this.base}/interrupt`, { method: "POST", body: JSON.stringify({ prompt_id: promptId }) });
  }

  async view(image: Schemas["ImageRef"]): Promise<Response> {
    return fetch(`${this.base}/view?${new URLSearchParams(image)}`);
  }

  // Open /ws for this client; `messages` yields its text frames as typed WsMessage values.
  async connect(): Promise<Progress> {
    const socket = new WebSocket(`${this.base.replace(/^http/, "ws")}/ws?clientId=${this.clientId}`);
    await new Promise((resolve, reject) => {
      socket.addEventListener("open", resolve, { once: true });
      socket.addEventListener("error", reject, { once: true });
    });
    return new Progress(socket);
  }
}

// Follows one prompt over the socket until ComfyUI's end marker, `executing` with node null.
export class Progress {
  private readonly seen: WsMessage[] = [];
  private waiters: Array<() => void> = [];

  constructor(readonly socket: WebSocket) {
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return; // binary preview frames
      this.seen.push(JSON.parse(event.data) as WsMessage);
      this.waiters.splice(0).forEach((wake) => wake());
    });
  }

  private forPrompt(promptId: string): WsMessage[] {
    return this.seen.filter((m) => "prompt_id" in m.data && m.data.prompt_id === promptId);
  }

  // Resolves with the prompt's messages once `pred` holds for one of them.
  async until(promptId: string, pred: (m: WsMessage) => boolean, timeoutMs = 10_000): Promise<WsMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (!this.forPrompt(promptId).some(pred)) {
      if (Date.now() > deadline) throw new Error(`no matching message for ${promptId} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.forPrompt(promptId);
  }

  async finished(promptId: string): Promise<WsMessage[]> {
    return this.until(promptId, (m) => m.type === "executing" && m.data.node === null);
  }

  close(): void {
    this.socket.close();
  }
}

// The replay's admin API (/__cassettes__): faults, the manual clock, the request journal.
export class Admin {
  constructor(readonly base: string, private readonly token?: string) {}

  private async call<T>(method: string, path: string, body?: unknown, ok: number[] = [200, 201]): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(`${this.base}/__cassettes__${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const parsed = (await response.json()) as T;
    if (!ok.includes(response.status)) throw new HttpError(response.status, parsed);
    return { status: response.status, body: parsed };
  }

  async reset(): Promise<Schemas["ResetDone"]> {
    return (await this.call<Schemas["ResetDone"]>("POST", "/reset")).body;
  }

  async addFaults(...rules: FaultRule[]): Promise<Schemas["FaultsAdded"]> {
    return (await this.call<Schemas["FaultsAdded"]>("POST", "/faults", rules)).body;
  }

  async hold(hold: Schemas["Hold"]): Promise<Schemas["ClockState"]> {
    return (await this.call<Schemas["ClockState"]>("POST", "/clock/hold", hold)).body;
  }

  async waitHeld(wait: Schemas["Wait"]): Promise<Schemas["HeldJob"]> {
    return (await this.call<Schemas["HeldJob"]>("POST", "/clock/wait", wait)).body;
  }

  async advance(advance: Schemas["Advance"]): Promise<Schemas["Advanced"]> {
    return (await this.call<Schemas["Advanced"]>("POST", "/clock/advance", advance)).body;
  }

  // 200 when the journal holds what `expectation` says, else the 409 verdict (what was received).
  async assertRequested(expectation: Schemas["JournalExpectation"]): Promise<{ status: number; body: Schemas["Verdict"] }> {
    return this.call<Schemas["Verdict"]>("POST", "/journal/assert", expectation, [200, 409]);
  }

  // Any admin request, untyped: for showing what the server refuses.
  async raw(method: string, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    return this.call<unknown>(method, path, body, [200, 201, 400, 408, 409]);
  }
}
