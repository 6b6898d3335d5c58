// Markdown as it streams in: finished blocks are rendered once and kept, only the block still
// growing is rendered again, at most once per animation frame.
//
//   text:  | block | block | block | growing tail |
//          '------ committed ------'
//   DOM:   <div class="done"> (appended to, never rebuilt)  <div class="live"> (rebuilt per frame)
//
// Citation marks ([1], [citation:1]) link to the answer's sources: while streaming by their
// number, in the finished answer exactly where the server's url_citation annotations put them.

import markdownit from "../vendor/markdown-it.min.mjs";

const md = markdownit({ html: false, linkify: true, typographer: false, highlight });
md.disable("image"); // model output never makes the page load anything

const MARK = /^\[(?:citation:)?(\d{1,3})\]/;
const PLACED = /^\[\uE000(\d{1,3})\]/; // a mark placed by an annotation (see placeCitations)
const SAFE_PROTOCOLS = new Set(["http:", "https:", "file:"]);

function highlight(code, lang) {
  const hljs = globalThis.hljs;
  if (!hljs || !lang || !hljs.getLanguage(lang)) return "";
  return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
}

export function safeUrl(url) {
  try {
    return SAFE_PROTOCOLS.has(new URL(url).protocol) ? url : "#";
  } catch {
    return "#";
  }
}

// env: { sources: [{url, title}], marks: bool (link bare marks by number) }
function citeRule(state, silent) {
  const sources = state.env?.sources;
  if (!sources?.length || state.src.charCodeAt(state.pos) !== 0x5b) return false;
  const rest = state.src.slice(state.pos, state.pos + 16);
  let match = PLACED.exec(rest);
  if (!match && state.env.marks) {
    match = MARK.exec(rest);
    if (match && state.src[state.pos + match[0].length] === "(") match = null; // a Markdown link
  }
  const n = match ? Number(match[1]) : 0;
  if (n < 1 || n > sources.length) return false;
  if (!silent) state.push("cite", "", 0).meta = { n };
  state.pos += match[0].length;
  return true;
}

md.inline.ruler.before("link", "cite", citeRule);
md.renderer.rules.cite = (tokens, i, options, env) => {
  const n = tokens[i].meta.n;
  const source = env.sources[n - 1];
  const esc = md.utils.escapeHtml;
  return (
    `<a class="cite" href="${esc(safeUrl(source.url))}" title="${esc(source.title || source.url)}" ` +
    `target="_blank" rel="noopener noreferrer">${n}</a>`
  );
};
md.renderer.rules.link_open = (tokens, i, options, env, self) => {
  tokens[i].attrSet("target", "_blank");
  tokens[i].attrSet("rel", "noopener noreferrer");
  return self.renderToken(tokens, i, options);
};

export function renderMarkdown(text, env = {}) {
  return md.render(text, { marks: false, sources: [], ...env });
}

// `content` with each annotated mark replaced by a placed mark naming its source's number
// (annotation offsets count code points, as the server's do).
export function placeCitations(content, annotations, sources) {
  const points = Array.from(content);
  const spans = (annotations ?? [])
    .filter((a) => a.type === "url_citation")
    .map((a) => a.url_citation)
    .sort((a, b) => a.start_index - b.start_index);
  const parts = [];
  let at = 0;
  for (const span of spans) {
    const n = sources.findIndex((s) => s.url === span.url) + 1;
    if (n === 0 || span.start_index < at || span.end_index > points.length) continue;
    parts.push(points.slice(at, span.start_index).join(""), `[\uE000${n}]`);
    at = span.end_index;
  }
  parts.push(points.slice(at).join(""));
  return parts.join("");
}

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const LIST_ITEM = /^(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)/;
const MAX_MARKER_CHARS = 11; // "123456789. "

// Whether `line`, after a blank line, starts a new top-level block: no indent, and not a list
// item (which may continue the list above). An unfinished line is judged once it can be.
function startsBlock(line, complete) {
  if (!/^\S/.test(line)) return false;
  if (complete || line.length > MAX_MARKER_CHARS) return !LIST_ITEM.test(line);
  return !/^[-+*\d]/.test(line);
}

function closesFence(line, fence) {
  const close = FENCE.exec(line);
  return close !== null && close[1][0] === fence[0] && close[1].length >= fence.length && !line.slice(close[0].length).trim();
}

// The offset, at or after `from`, up to which `text` holds only finished blocks: the start of a
// line that follows a blank line outside fenced code and starts a new block. `from` must be such
// an offset (or 0).
export function stableEnd(text, from) {
  let end = from;
  let fence = null;
  let blank = false;
  for (let pos = from; pos < text.length; ) {
    const nl = text.indexOf("\n", pos);
    const complete = nl >= 0;
    const line = text.slice(pos, complete ? nl : text.length);
    if (fence) {
      if (complete && closesFence(line, fence)) fence = null;
    } else if (!line.trim()) {
      blank ||= complete;
    } else {
      if (blank && startsBlock(line, complete)) end = pos;
      blank = false;
      const open = FENCE.exec(line);
      if (open && complete) fence = open[1];
    }
    if (!complete) break;
    pos = nl + 1;
  }
  return end;
}

export class StreamView {
  constructor(root, env = {}) {
    this.root = root;
    this.env = { marks: true, sources: [], ...env };
    this.done = document.createElement("div");
    this.live = document.createElement("div");
    this.done.className = "done";
    this.live.className = "live";
    root.replaceChildren(this.done, this.live);
    this.text = "";
    this.committed = 0;
    this.frame = 0;
  }

  set(text) {
    this.text = text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  paint() {
    this.frame = 0;
    const end = stableEnd(this.text, this.committed);
    if (end > this.committed) {
      this.done.insertAdjacentHTML("beforeend", md.render(this.text.slice(this.committed, end), this.env));
      this.committed = end;
    }
    this.live.innerHTML = md.render(this.text.slice(this.committed), this.env);
  }

  // The whole text once more, as one document (references, citations from annotations).
  finish(text, env = {}) {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.root.innerHTML = renderMarkdown(text, env);
  }
}
