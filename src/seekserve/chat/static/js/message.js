// One message on screen (MessageView), and one answer being streamed into it (Turn).

import { placeCitations, renderMarkdown, safeUrl, StreamView } from "./markdown.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, onClick, className = "") {
  const node = el("button", className, label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function seconds(ms) {
  return ms < 10000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

export function statsText(stats) {
  const parts = [];
  if (stats.ttftMs != null) parts.push(`TTFT ${seconds(stats.ttftMs)}`);
  if (stats.tokensPerS != null) parts.push(`${stats.tokensPerS.toFixed(1)} tokens/s`);
  if (stats.completionTokens != null) {
    const approx = stats.counted ? "≈" : "";
    const prompt = stats.promptTokens != null ? `${stats.promptTokens} prompt + ` : "";
    parts.push(`${prompt}${approx}${stats.completionTokens} completion tokens`);
  }
  return parts.join(" · ");
}

function thinkingSummary(message) {
  const chars = message.reasoning?.length ?? 0;
  if (message.reasoningMs == null) return `Thinking… ${chars} characters`;
  return `Thought for ${seconds(message.reasoningMs)} · ${chars} characters`;
}

// handlers: { copy(message), edit(message, view), regenerate(message), retry(message) }
export class MessageView {
  constructor(message, handlers) {
    this.message = message;
    this.handlers = handlers;
    this.root = el("article", `message ${message.role}`);
    this.root.setAttribute("aria-label", message.role === "user" ? "You" : "Answer");
    this.meta = el("div", "meta", message.role === "user" ? "You" : message.model ?? "Answer");
    this.thinking = el("details", "thinking");
    this.thinking.hidden = true;
    this.summary = el("summary");
    this.thinkingBody = el("div", "md thinking-body");
    this.thinking.append(this.summary, this.thinkingBody);
    this.body = el("div", "md body");
    this.sources = el("ol", "sources");
    this.sources.hidden = true;
    this.sources.setAttribute("aria-label", "Sources");
    this.note = el("p", "note");
    this.note.hidden = true;
    this.error = el("div", "error");
    this.error.hidden = true;
    this.error.setAttribute("role", "alert");
    this.stats = el("p", "stats");
    this.actions = el("div", "actions");
    this.root.append(this.meta, this.thinking, this.body, this.sources, this.note, this.error, this.stats, this.actions);
    if (message.role === "user") this.body.textContent = message.content;
  }

  // The message as stored: rendered once, whole.
  showStored(isLast) {
    const m = this.message;
    if (m.role === "assistant") {
      this.body.innerHTML = this.markdown(m);
      if (m.reasoning) this.showReasoning(renderMarkdown(m.reasoning));
      this.showSources(m.sources ?? [], m.searchError);
      this.stats.textContent = this.statsLine(m);
      if (m.error) this.showError(m.error.message, isLast ? () => this.handlers.retry(m) : null);
    }
    this.showActions(isLast);
  }

  markdown(m) {
    const sources = m.sources ?? [];
    if (m.annotations) return renderMarkdown(placeCitations(m.content, m.annotations, sources), { sources });
    return renderMarkdown(m.content, { sources, marks: sources.length > 0 });
  }

  statsLine(m) {
    const text = m.stats ? statsText(m.stats) : "";
    return m.stopped ? (text ? `Stopped · ${text}` : "Stopped") : text;
  }

  showReasoning(html) {
    this.thinking.hidden = false;
    this.summary.textContent = thinkingSummary(this.message);
    if (html !== undefined) this.thinkingBody.innerHTML = html;
  }

  showSources(sources, searchError) {
    this.sources.replaceChildren(
      ...sources.map((s, i) => {
        const link = el("a", "chip");
        link.href = safeUrl(s.url);
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.title = s.snippet ? `${s.url}\n\n${s.snippet}` : s.url;
        link.append(el("span", "chip-number", String(i + 1)), el("span", "chip-title", s.title || s.url));
        const item = el("li");
        item.append(link);
        return item;
      }),
    );
    this.sources.hidden = sources.length === 0;
    this.note.hidden = !searchError;
    this.note.textContent = searchError ? `Answered without web search: ${searchError}` : "";
  }

  showError(text, retry) {
    this.error.hidden = false;
    const words = el("p", "", text);
    this.error.replaceChildren(words);
    if (retry) this.error.append(button("Retry", retry, "retry"));
    return words;
  }

  clearError() {
    this.error.hidden = true;
    this.error.replaceChildren();
  }

  showActions(isLast) {
    const m = this.message;
    const h = this.handlers;
    const buttons = [button("Copy", () => h.copy(m, this), "copy")];
    if (m.role === "user") buttons.push(button("Edit", () => h.edit(m, this), "edit"));
    if (m.role === "assistant" && isLast) buttons.push(button("Regenerate", () => h.regenerate(m), "regenerate"));
    this.actions.replaceChildren(...buttons);
  }
}

// The message's text (Markdown as written) to the clipboard; without the Clipboard API (a page
// served over plain HTTP to another machine), through a selected text area.
export async function copyMessage(message, view) {
  const node = view.actions.querySelector(".copy");
  try {
    await navigator.clipboard.writeText(message.content);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: message.content });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  node.textContent = "Copied";
  setTimeout(() => (node.textContent = "Copy"), 1500);
}

// An answer arriving: fills `message` from the stream's chunks and keeps `view` in step.
export class Turn {
  constructor(message, view) {
    this.message = message;
    this.view = view;
    this.sentAt = performance.now();
    this.firstAt = null;
    this.lastAt = null;
    this.reasoningStart = null;
    this.numChunks = 0;
    this.usage = null;
    this.answer = new StreamView(view.body);
    this.reasoning = null;
  }

  chunk(chunk) {
    if (chunk.search_results) this.sourcesArrived(chunk.search_results, chunk.search_error);
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.[0];
    if (!choice) return;
    const delta = choice.delta ?? {};
    const now = performance.now();
    if (delta.reasoning_content) this.addReasoning(delta.reasoning_content, now);
    if (delta.content) this.addContent(delta.content, now);
    if (delta.annotations) this.message.annotations = delta.annotations;
  }

  sourcesArrived(sources, searchError) {
    const m = this.message;
    m.sources = sources.map((s) => ({ url: s.url, title: s.title, snippet: s.snippet }));
    if (searchError) m.searchError = searchError;
    this.answer.env.sources = m.sources;
    this.view.showSources(m.sources, searchError);
  }

  tick(now) {
    this.firstAt ??= now;
    this.lastAt = now;
    this.numChunks += 1;
  }

  addReasoning(text, now) {
    const m = this.message;
    this.tick(now);
    if (this.reasoning === null) {
      this.reasoningStart = now;
      m.reasoning = "";
      this.reasoning = new StreamView(this.view.thinkingBody, { marks: false });
      this.view.thinking.open = true;
    }
    m.reasoning += text;
    this.reasoning.set(m.reasoning);
    this.view.showReasoning();
  }

  addContent(text, now) {
    const m = this.message;
    this.tick(now);
    if (this.reasoning !== null && m.reasoningMs == null) this.endReasoning(now);
    m.content += text;
    this.answer.set(m.content);
  }

  endReasoning(now) {
    this.message.reasoningMs = now - this.reasoningStart;
    this.reasoning.finish(this.message.reasoning);
    this.view.showReasoning();
    this.view.thinking.open = false;
  }

  // The stream is over (finished, stopped or failed): render once, whole, and record the figures.
  end() {
    const m = this.message;
    if (this.reasoning !== null && m.reasoningMs == null) this.endReasoning(this.lastAt ?? performance.now());
    this.answer.finish(placeCitations(m.content, m.annotations ?? [], m.sources ?? []), {
      sources: m.sources ?? [],
      marks: !m.annotations && (m.sources ?? []).length > 0,
    });
    if (this.firstAt !== null) m.stats = this.stats();
    this.view.stats.textContent = this.view.statsLine(m);
  }

  stats() {
    const usage = this.usage;
    const completionTokens = usage?.completion_tokens ?? this.numChunks;
    const decodeS = (this.lastAt - this.firstAt) / 1000;
    return {
      ttftMs: this.firstAt - this.sentAt,
      tokensPerS: decodeS > 0 && completionTokens > 1 ? (completionTokens - 1) / decodeS : null,
      promptTokens: usage?.prompt_tokens ?? null,
      completionTokens,
      counted: !usage,
    };
  }
}
