/*!
 * Kefu's safe Markdown renderer, shared by the customer widget (widget.js loads it from the same
 * Kefu host) and the agent console, so that agents see answers exactly as customers do.
 *
 *   KefuMarkdown.render(container, source)   replaces the content of `container`
 *
 * Text only ever reaches the DOM through text nodes; elements are built one by one (nothing
 * here uses innerHTML), and links are limited to absolute http(s) and mailto URLs.
 */
(() => {
  "use strict";

  if (window.KefuMarkdown) return;

  /** A new `tag` element appended to `parent`, holding `text` (a text node) when given. */
  const el = (tag, text, parent) => {
    const node = parent.appendChild(document.createElement(tag));
    if (text != null) node.textContent = text;
    return node;
  };

  // A small subset, rendered straight into DOM nodes: paragraphs, line breaks, **bold**,
  // *italic* / _italic_, `code`, fenced code blocks, bullet and numbered lists, headings (as
  // bold lines), [links](url) and bare URLs. Unclosed constructs stay literal text, so a
  // half-streamed answer renders sensibly and settles when the rest arrives.

  const INLINE = new RegExp(
    [
      "`([^`\\n]+)`", // 1 code
      "\\*\\*(?=\\S)([^\\n]*?\\S)\\*\\*", // 2 bold
      "(?<![\\w])__(?=\\S)([^\\n]*?\\S)__(?![\\w])", // 3 bold
      "\\*(?=[^\\s*])([^*\\n]*?[^\\s*])?\\*", // 4 italic (4 undefined: one character)
      "(?<![\\w])_(?=[^\\s_])([^_\\n]*?[^\\s_])?_(?![\\w])", // 5 italic
      "\\[([^\\]\\n]+)\\]\\(\\s*((?:[^()\\s]|\\([^()\\s]*\\))+)\\s*\\)", // 6 label, 7 href
      "((?:https?:\\/\\/|mailto:)[^\\s<>\"'`]+)", // 8 bare URL
    ].join("|"),
    "g",
  );
  // Punctuation that ends a sentence rather than a bare URL.
  const URL_TAIL = /[.,;:!?'")\]}>。，、；：！？）】」』》]+$/;
  const SAFE_PROTOCOLS = ["http:", "https:", "mailto:"];

  /** The normalised URL when it is absolute http(s) or mailto, else null. */
  const safeUrl = (href) => {
    try {
      const url = new URL(href); // relative URLs throw: they would resolve against the host page
      return SAFE_PROTOCOLS.includes(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  };

  const link = (parent, href) => {
    const a = el("a", null, parent);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    return a;
  };

  /** Renders inline Markdown of `text` into `parent`; `links` is false inside a link's label. */
  const renderInline = (parent, text, links = true) => {
    const re = new RegExp(INLINE.source, "g");
    let last = 0;
    let m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.append(text.slice(last, m.index));
      last = re.lastIndex;
      const [whole, code, bold1, bold2, , , label, href, bare] = m;
      if (code !== undefined) {
        el("code", code, parent);
      } else if (bold1 !== undefined || bold2 !== undefined) {
        renderInline(el("strong", null, parent), bold1 || bold2, links);
      } else if (whole[0] === "*" || whole[0] === "_") {
        renderInline(el("em", null, parent), whole.slice(1, -1), links);
      } else if (label !== undefined) {
        const url = links && safeUrl(href);
        // An unsafe link (javascript:, data:, relative…) keeps its label as plain text.
        renderInline(url ? link(parent, url) : parent, label, false);
      } else {
        const tail = (bare.match(URL_TAIL) || [""])[0];
        const address = bare.slice(0, bare.length - tail.length);
        const url = links && safeUrl(address);
        if (url) link(parent, url).textContent = address;
        else parent.append(address);
        if (tail) parent.append(tail);
      }
    }
    if (last < text.length) parent.append(text.slice(last));
  };

  /** Replaces the content of `container` with the rendered Markdown `source`. */
  const renderMarkdown = (container, source) => {
    container.textContent = "";
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let paragraph = null;
    let list = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/);
      if (fence) {
        paragraph = list = null;
        const code = [];
        for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) {
          code.push(lines[i]);
        }
        const block = el("code", code.join("\n"), el("pre", null, container));
        if (fence[2]) block.dataset.lang = fence[2];
        continue;
      }
      if (!line.trim()) {
        paragraph = list = null;
        continue;
      }
      const item = line.match(/^\s{0,3}(?:([-*+•])|(\d{1,9})[.)])\s+(.*)$/);
      if (item) {
        const tag = item[1] ? "UL" : "OL";
        if (!list || list.tagName !== tag) {
          paragraph = null;
          list = el(tag.toLowerCase(), null, container);
          if (tag === "OL" && item[2] !== "1") list.start = Number(item[2]);
        }
        renderInline(el("li", null, list), item[3]);
        continue;
      }
      if (list && /^\s+\S/.test(line)) {
        // An indented line continues the list item above it.
        const last = list.lastElementChild;
        last.appendChild(document.createElement("br"));
        renderInline(last, line.trim());
        continue;
      }
      list = null;
      const heading = line.match(/^\s{0,3}#{1,6}\s+(.*?)[\s#]*$/);
      if (heading) {
        paragraph = null;
        renderInline(el("strong", null, el("p", null, container)), heading[1]);
        continue;
      }
      if (paragraph) paragraph.appendChild(document.createElement("br"));
      else paragraph = el("p", null, container);
      renderInline(paragraph, line);
    }
  };

  window.KefuMarkdown = Object.freeze({ render: renderMarkdown });
})();
