// The chat page: settings, the conversation on screen, sending, stopping and retrying.

import { listModels, streamChat } from "./api.js";
import { copyMessage, MessageView, Turn } from "./message.js";
import { exportConversation, Sidebar } from "./sidebar.js";
import { Conversations, settings } from "./store.js";

const DEEPSEEK_SAMPLING = { temperature: "0.6", topP: "0.95" }; // DeepSeek's advice for its models
const MAX_AUTO_RETRIES = 3;
const $ = (id) => document.getElementById(id);
const ui = {
  messages: $("messages"), prompt: $("prompt"), send: $("send"), stop: $("stop"), status: $("status"),
  model: $("model"), temperature: $("temperature"), topP: $("top-p"), maxTokens: $("max-tokens"),
  system: $("system-prompt"), apiKey: $("api-key"), webSearch: $("web-search"), settings: $("settings"),
};

const store = new Conversations();
const saved = { temperature: "", topP: "", maxTokens: "", system: "", webSearch: false, ...settings.load() };
let current = null; // the conversation on screen
let busy = null; // { controller } while an answer streams
let retryTimer = 0;
let follow = true; // keep the newest text in view while the reader is at the bottom
const views = new Map(); // message -> MessageView

const handlers = { copy: copyMessage, edit, regenerate: (m) => retry(m, 0), retry: (m) => retry(m, 0) };
const sidebar = new Sidebar($("conversations"), store, {
  select: (c) => show(c),
  removed: (c) => (c === current ? show(store.list[0] ?? store.create()) : sidebar.render()),
});

function saveSettings() {
  Object.assign(saved, {
    model: ui.model.value, temperature: ui.temperature.value, topP: ui.topP.value,
    maxTokens: ui.maxTokens.value, system: ui.system.value, webSearch: ui.webSearch.checked,
  });
  settings.save(saved);
}

function applyModelDefaults() {
  if (saved.samplingTouched) return;
  const deepseek = /deepseek/i.test(ui.model.value);
  ui.temperature.value = deepseek ? DEEPSEEK_SAMPLING.temperature : "";
  ui.topP.value = deepseek ? DEEPSEEK_SAMPLING.topP : "";
  saveSettings();
}

async function loadModels() {
  try {
    const ids = await listModels(ui.apiKey.value);
    ui.model.replaceChildren(...ids.map((id) => new Option(id, id)));
    if (ids.includes(saved.model)) ui.model.value = saved.model;
    ui.status.textContent = ids.length ? "" : "The server lists no models.";
    applyModelDefaults();
  } catch (e) {
    if (e.status === 401) {
      ui.status.textContent = "This server needs an API key: enter it under Settings.";
      toggleSettings(true);
      return;
    }
    const waitS = e.retryAfterS ?? 2;
    ui.status.textContent = `Cannot list the models yet (${e.message}); trying again in ${waitS} s.`;
    setTimeout(loadModels, waitS * 1000);
  }
}

function toggleSettings(open = ui.settings.hidden) {
  ui.settings.hidden = !open;
  $("toggle-settings").setAttribute("aria-expanded", String(open));
}

function show(conversation) {
  stop();
  follow = true;
  current = conversation;
  views.clear();
  ui.messages.replaceChildren(...conversation.messages.map((m, i) => {
    const view = new MessageView(m, handlers);
    views.set(m, view);
    view.showStored(i === conversation.messages.length - 1);
    return view.root;
  }));
  sidebar.render(conversation.id);
}

function append(message) {
  const last = current.messages.at(-1);
  if (last) views.get(last)?.showActions(false);
  current.messages.push(message);
  const view = new MessageView(message, handlers);
  views.set(message, view);
  ui.messages.append(view.root);
  view.showActions(true);
  return view;
}

function requestBody(upTo) {
  const history = current.messages.slice(0, current.messages.indexOf(upTo));
  const messages = history
    .filter((m) => m.role === "user" || m.content)
    .map((m) => ({ role: m.role, content: m.content }));
  if (ui.system.value.trim()) messages.unshift({ role: "system", content: ui.system.value });
  const body = { model: ui.model.value, messages, stream_options: { include_usage: true } };
  const number = (input) => (input.value === "" ? null : Number(input.value));
  if (number(ui.temperature) !== null) body.temperature = number(ui.temperature);
  if (number(ui.topP) !== null) body.top_p = number(ui.topP);
  if (number(ui.maxTokens) !== null) body.max_tokens = number(ui.maxTokens);
  if (ui.webSearch.checked) body.web_search_options = {};
  return body;
}

function setBusy(on) {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.messages.setAttribute("aria-busy", String(on));
  ui.status.textContent = on ? "Answering…" : "";
}

async function run(message, view, attempt) {
  const conversation = current;
  const controller = new AbortController();
  busy = { controller };
  setBusy(true);
  view.clearError();
  const turn = new Turn(message, view);
  let failure = null;
  try {
    await streamChat(requestBody(message), ui.apiKey.value, controller.signal, (c) => turn.chunk(c));
  } catch (e) {
    if (controller.signal.aborted) message.stopped = true;
    else failure = e;
  }
  turn.end();
  busy = null;
  setBusy(false);
  if (failure) fail(message, view, failure, attempt);
  store.touch(conversation);
  sidebar.render();
}

function describe(e) {
  if (e.kind === "network") return `Could not reach the server: ${e.message}.`;
  if (e.kind === "cut") return `The answer was cut off: ${e.message}.`;
  if (e.kind === "stream") return `The server ended the answer with an error: ${e.message}`;
  if (e.status === 429) return `The server is busy (429): ${e.message}`;
  if (e.status === 401) return `The server needs an API key (401): ${e.message} Enter it under Settings.`;
  if (e.status === 503) return `The server is not ready (503): ${e.message}`;
  return `The server refused the request (${e.status}): ${e.message}`;
}

function fail(message, view, e, attempt) {
  const text = describe(e);
  message.error = { message: text, status: e.status };
  if (e.status !== 429 || attempt >= MAX_AUTO_RETRIES) {
    view.showError(text, () => retry(message, 0));
    return;
  }
  let leftS = Math.max(1, Math.ceil(e.retryAfterS ?? 1));
  const words = view.showError(`${text} Retrying in ${leftS} s…`, () => retry(message, 0));
  retryTimer = setInterval(() => {
    leftS -= 1;
    words.textContent = `${text} Retrying in ${leftS} s…`;
    if (leftS <= 0) retry(message, attempt + 1);
  }, 1000);
}

function retry(message, attempt) {
  clearInterval(retryTimer);
  if (busy || !current.messages.includes(message)) return;
  for (const key of ["reasoning", "reasoningMs", "sources", "searchError", "annotations", "stats", "stopped", "error"]) {
    delete message[key];
  }
  message.content = "";
  message.model = ui.model.value;
  const old = views.get(message);
  const view = new MessageView(message, handlers);
  views.set(message, view);
  old.root.replaceWith(view.root);
  view.showActions(current.messages.at(-1) === message);
  run(message, view, attempt);
}

function send() {
  const text = ui.prompt.value;
  if (busy || !text.trim()) return;
  follow = true;
  if (!ui.model.value) {
    ui.status.textContent = "No model to send to yet.";
    return;
  }
  ui.prompt.value = "";
  clearInterval(retryTimer);
  append({ role: "user", content: text });
  store.touch(current);
  sidebar.render();
  answer();
}

function answer() {
  const message = { role: "assistant", content: "", model: ui.model.value };
  run(message, append(message), 0);
}

function stop() {
  clearInterval(retryTimer);
  busy?.controller.abort();
}

function edit(message, view) {
  if (busy) return;
  const box = document.createElement("textarea");
  box.className = "edit-box";
  box.value = message.content;
  box.setAttribute("aria-label", "Edit the message");
  const save = Object.assign(document.createElement("button"), { type: "button", textContent: "Send" });
  const cancel = Object.assign(document.createElement("button"), { type: "button", textContent: "Cancel" });
  save.addEventListener("click", () => {
    if (!box.value.trim()) return;
    message.content = box.value;
    current.messages.splice(current.messages.indexOf(message) + 1);
    show(current);
    answer();
  });
  cancel.addEventListener("click", () => show(current));
  view.body.replaceChildren(box);
  view.actions.replaceChildren(save, cancel);
  box.focus();
}

function wire() {
  ui.messages.addEventListener("scroll", () => {
    follow = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 48;
  });
  new MutationObserver(() => {
    if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
  }).observe(ui.messages, { childList: true, subtree: true, characterData: true });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && busy) stop();
  });
  ui.stop.addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    show(current.messages.length ? store.create() : current);
    ui.prompt.focus();
  });
  $("toggle-settings").addEventListener("click", () => toggleSettings());
  $("toggle-sidebar").addEventListener("click", (e) => {
    const open = document.body.classList.toggle("sidebar-open");
    e.currentTarget.setAttribute("aria-expanded", String(open));
  });
  $("export-json").addEventListener("click", () => exportConversation(current, "json"));
  $("export-md").addEventListener("click", () => exportConversation(current, "md"));
  for (const input of [ui.temperature, ui.topP]) {
    input.addEventListener("input", () => {
      saved.samplingTouched = true;
      saveSettings();
    });
  }
  for (const input of [ui.maxTokens, ui.system, ui.webSearch]) input.addEventListener("change", saveSettings);
  ui.model.addEventListener("change", () => {
    saveSettings();
    applyModelDefaults();
  });
  ui.apiKey.addEventListener("change", () => {
    settings.saveApiKey(ui.apiKey.value);
    loadModels();
  });
}

function init() {
  ui.temperature.value = saved.temperature;
  ui.topP.value = saved.topP;
  ui.maxTokens.value = saved.maxTokens;
  ui.system.value = saved.system;
  ui.webSearch.checked = saved.webSearch;
  ui.apiKey.value = settings.apiKey();
  wire();
  show(store.list[0] ?? store.create());
  loadModels();
  ui.prompt.focus();
}

init();
