// The OpenAI-compatible API of the server the page came from: /v1/models and a streamed
// /v1/chat/completions. Paths are relative, so the page works behind a proxy that adds a prefix.

export class ApiError extends Error {
  // kind: "http" (an error status), "network" (no answer), "cut" (the stream ended early),
  // "stream" (the server sent an error event inside the stream)
  constructor(kind, message, { status = 0, retryAfterS = null } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

async function httpError(response) {
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    message = body?.error?.message ?? body?.detail ?? message;
  } catch {
    // not JSON: keep the status text
  }
  const retry = Number.parseFloat(response.headers.get("retry-after") ?? "");
  const retryAfterS = Number.isFinite(retry) && retry >= 0 ? retry : null;
  return new ApiError("http", String(message), { status: response.status, retryAfterS });
}

export async function listModels(apiKey) {
  let response;
  try {
    response = await fetch("v1/models", { headers: authHeaders(apiKey) });
  } catch (e) {
    throw new ApiError("network", `could not reach the server (${e.message})`);
  }
  if (!response.ok) throw await httpError(response);
  const body = await response.json();
  return (body.data ?? []).map((m) => m.id);
}

// The data lines of one server-sent event, joined.
function eventData(event) {
  return event
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, ""))
    .join("\n");
}

function parseChunk(data) {
  let chunk;
  try {
    chunk = JSON.parse(data);
  } catch {
    throw new ApiError("stream", `the server sent an event that is not JSON: ${data.slice(0, 80)}`);
  }
  if (chunk.error) throw new ApiError("stream", String(chunk.error.message ?? "unknown error"));
  return chunk;
}

async function read(reader, signal) {
  try {
    return await reader.read();
  } catch (e) {
    if (signal.aborted) throw e;
    throw new ApiError("cut", `the connection broke before the answer finished (${e.message})`);
  }
}

// POST `body` with stream: true and call onChunk(chunk) for every chunk, in order. Resolves at
// `data: [DONE]`; rejects with an ApiError (or the AbortError of `signal`).
export async function streamChat(body, apiKey, signal, onChunk) {
  let response;
  try {
    response = await fetch("v1/chat/completions", {
      method: "POST",
      headers: { ...authHeaders(apiKey), "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
  } catch (e) {
    if (signal.aborted) throw e;
    throw new ApiError("network", `could not reach the server (${e.message})`);
  }
  if (!response.ok) throw await httpError(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await read(reader, signal);
      if (done) break;
      buffer += value.replaceAll("\r\n", "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const data = eventData(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (data === "[DONE]") return;
        if (data) onChunk(parseChunk(data));
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new ApiError("cut", "the connection closed before the answer finished");
}
