// The API as the pages use it: JSON calls, errors as the API states them, and event streams.
import { askForKey, getKey } from "./key.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const key = getKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

function messageOf(status, statusText, text) {
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const error = data && data.error;
  if (typeof error === "string") return error;
  if (error && typeof error.message === "string") return error.message;
  if (data && typeof data.detail === "string") return data.detail;
  return text.trim().slice(0, 300) || `${status} ${statusText}`;
}

async function failure(response) {
  const message = messageOf(response.status, response.statusText, await response.text());
  if (response.status === 401) {
    askForKey("imagegen refused the request (401): enter a valid API key.");
  }
  return new ApiError(response.status, message);
}

/** Calls the API; resolves to the parsed JSON body, rejects with an ApiError. */
export async function api(path, { method = "GET", body, prefer } = {}) {
  const extra = {};
  if (body !== undefined) extra["Content-Type"] = "application/json";
  if (prefer) extra.Prefer = prefer;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `imagegen could not be reached (${error.message})`);
  }
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

/** Says what went wrong, with the status, as a person reads it. */
export function describeError(error) {
  if (!(error instanceof ApiError) || error.status === 0) return String(error.message || error);
  if (error.status === 401) return `401 Unauthorized: ${error.message}. Enter an API key under "API key" at the top.`;
  return `${error.status}: ${error.message}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseBlock(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

/**
 * Follows a generation's server-sent events until `done` (fetch, not EventSource, so that the
 * API key can be sent). Each connection starts with the job's current state, so a dropped
 * stream is simply reopened.
 */
export async function follow(id, onEvent, signal) {
  const path = `/api/v1/generations/${encodeURIComponent(id)}/events`;
  for (let attempt = 0; attempt < 30 && !signal.aborted; attempt++) {
    let response;
    try {
      response = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
    } catch {
      if (signal.aborted) return;
      await sleep(1000);
      continue;
    }
    if (!response.ok) throw await failure(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!message) continue;
          onEvent(message.event, message.data);
          if (message.event === "done") return;
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    await sleep(500);
  }
}
