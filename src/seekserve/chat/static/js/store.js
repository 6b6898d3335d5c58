// Conversations and settings, kept in this browser's localStorage only.
//
// conversation: { id, title, created, updated, messages: [message] }
// message: { role: "user" | "assistant", content, model?, reasoning?, reasoningMs?, sources?,
//            searchError?, annotations?, stats?, stopped?, error? }

const CONVERSATIONS = "seekserve.chat.conversations";
const SETTINGS = "seekserve.chat.settings";
const API_KEY = "seekserve.chat.apiKey";
const TITLE_CHARS = 60;

function read(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) ?? "null");
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false; // storage full or disabled: the page keeps working without it
  }
}

export const settings = {
  load: () => read(SETTINGS, {}),
  save: (value) => write(SETTINGS, value),
  apiKey: () => localStorage.getItem(API_KEY) ?? "",
  saveApiKey: (key) => (key ? localStorage.setItem(API_KEY, key) : localStorage.removeItem(API_KEY)),
};

export class Conversations {
  constructor() {
    this.list = read(CONVERSATIONS, []).filter((c) => c && Array.isArray(c.messages));
  }

  save() {
    return write(CONVERSATIONS, this.list);
  }

  get(id) {
    return this.list.find((c) => c.id === id) ?? null;
  }

  create() {
    const now = Date.now();
    const conversation = { id: `c${now.toString(36)}${Math.random().toString(36).slice(2, 6)}`,
      title: "New chat", created: now, updated: now, messages: [] };
    this.list.unshift(conversation);
    return conversation;
  }

  touch(conversation) {
    conversation.updated = Date.now();
    if (conversation.title === "New chat") {
      const first = conversation.messages.find((m) => m.role === "user");
      if (first) conversation.title = titleOf(first.content);
    }
    this.list.sort((a, b) => b.updated - a.updated);
    this.save();
  }

  rename(conversation, title) {
    conversation.title = title.trim() || conversation.title;
    this.save();
  }

  remove(conversation) {
    this.list = this.list.filter((c) => c !== conversation);
    this.save();
  }
}

export function titleOf(text) {
  const line = text.trim().split("\n")[0];
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line || "New chat";
}

export function toJson(conversation) {
  return JSON.stringify(conversation, null, 2);
}

export function toMarkdown(conversation) {
  const parts = [`# ${conversation.title}`, ""];
  for (const m of conversation.messages) {
    parts.push(m.role === "user" ? "## User" : `## Assistant${m.model ? ` (${m.model})` : ""}`, "");
    if (m.reasoning) parts.push(m.reasoning.split("\n").map((l) => `> ${l}`).join("\n"), "");
    parts.push(m.content, "");
    (m.sources ?? []).forEach((s, i) => parts.push(`[${i + 1}]: ${s.url} "${(s.title ?? "").replaceAll('"', "'")}"`));
    if (m.sources?.length) parts.push("");
  }
  return parts.join("\n");
}

export function fileName(conversation, suffix) {
  const stem = conversation.title.replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 40);
  return `${stem || "chat"}.${suffix}`;
}
