// The list of conversations: select, rename (in place), delete (asks once), export.

import { fileName, toJson, toMarkdown } from "./store.js";

function download(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function exportConversation(conversation, format) {
  if (format === "json") download(toJson(conversation), fileName(conversation, "json"), "application/json");
  else download(toMarkdown(conversation), fileName(conversation, "md"), "text/markdown");
}

// store: Conversations; hooks: { select(conversation), removed(conversation) }
export class Sidebar {
  constructor(list, store, hooks) {
    this.list = list;
    this.store = store;
    this.hooks = hooks;
    this.currentId = null;
  }

  render(currentId = this.currentId) {
    this.currentId = currentId;
    this.list.replaceChildren(...this.store.list.map((c) => this.item(c)));
  }

  item(conversation) {
    const li = document.createElement("li");
    li.dataset.id = conversation.id;
    const select = document.createElement("button");
    select.type = "button";
    select.className = "select";
    select.textContent = conversation.title;
    if (conversation.id === this.currentId) select.setAttribute("aria-current", "true");
    select.addEventListener("click", () => this.hooks.select(conversation));
    const rename = this.small("rename", "✎", `Rename “${conversation.title}”`, () => this.rename(li, conversation));
    const remove = this.small("delete", "✕", `Delete “${conversation.title}”`, () => this.remove(remove, conversation));
    remove.addEventListener("blur", () => {
      remove.textContent = "✕";
      remove.classList.remove("confirm");
    });
    li.append(select, rename, remove);
    return li;
  }

  small(name, text, label, onClick) {
    const node = document.createElement("button");
    node.type = "button";
    node.className = `small ${name}`;
    node.textContent = text;
    node.setAttribute("aria-label", label);
    node.addEventListener("click", onClick);
    return node;
  }

  rename(li, conversation) {
    const input = document.createElement("input");
    input.className = "rename-input";
    input.value = conversation.title;
    input.setAttribute("aria-label", "New name");
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      if (save) this.store.rename(conversation, input.value);
      this.render();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") finish(true);
      if (e.key === "Escape") {
        e.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    li.replaceChildren(input);
    input.focus();
    input.select();
  }

  remove(node, conversation) {
    if (!node.classList.contains("confirm")) {
      node.classList.add("confirm");
      node.textContent = "Delete?";
      return;
    }
    this.store.remove(conversation);
    this.hooks.removed(conversation);
  }
}
