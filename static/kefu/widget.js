/*!
 * Kefu customer chat widget.
 *
 * Embedding: one tag, anywhere in the page.
 *
 *   <script src="https://KEFU_HOST/static/kefu/widget.js" data-key="PUBLIC_KEY" async></script>
 *
 * Options (data-* attributes on that tag):
 *   data-key       the tenant's public widget key (required; not a secret)
 *   data-lang      "zh" or "en": the widget's language (default: the browser's, else the tenant's)
 *   data-position  "right" or "left" (default: the tenant's setting)
 *   data-color     "#rrggbb" accent colour (default: the tenant's setting)
 *   data-open      "true" to start with the chat panel open
 *
 * JavaScript API, window.Kefu:
 *   Kefu.open(), Kefu.close()
 *   Kefu.ask("Where is my order?")          opens the panel and sends the question
 *   Kefu.identify({externalId, signature, name, email})
 *       tells Kefu who the visitor is. `signature` is the hex HMAC-SHA256 of `externalId` with
 *       the tenant's identity secret, computed by the tenant's server, never in the browser.
 *       Kept in memory only (sent with every hello of this page), never stored.
 *
 * Calls made before this script has loaded (it is async) are queued and replayed:
 *
 *   <script>
 *     window.Kefu = window.Kefu || { q: [] };
 *     Kefu.q.push(["identify", { externalId: "42", signature: "…", name: "Li Lei" }]);
 *     Kefu.q.push(["ask", "退货运费谁出？"]);
 *   </script>
 *
 * After loading, `Kefu.q.push([...])` keeps working (it calls the method at once).
 *
 * Design notes:
 * - Everything is rendered in a Shadow DOM on one host element whose inline `all: initial
 *   !important` cuts inheritance from the page, so page CSS cannot restyle the widget and the
 *   widget's CSS cannot leak out. The shadow root is "open": a closed root is no security
 *   boundary (the page runs in the same realm and could patch attachShadow or WebSocket), while
 *   an open one lets tests, browser extensions and accessibility tooling inspect the widget.
 * - Message text (customer, agent or model) only ever reaches the DOM through text nodes
 *   (textContent / append(string)); nothing here uses innerHTML. Answers are rendered from a
 *   small Markdown subset into elements built one by one; links are limited to http(s)/mailto
 *   (markdown.js, loaded from the same Kefu host and shared with the agent console).
 * - Protocol: docs/widget-protocol.md (hello/welcome, message/ack/delta/done, status, error,
 *   feedback, handoff, ping/pong) and the handoff frames of conversations/consumers.py
 *   (agent_message, typing, status.collect_contact → contact/ticket, rating_request → rating,
 *   welcome.tickets, welcome.pending → the contact form or the rating card again). Messages
 *   carry a client id until acknowledged, so a resend after a reconnect is deduplicated by the
 *   server and reconciled here.
 * - No request goes anywhere but the Kefu host the script was loaded from.
 */
(() => {
  "use strict";

  const SCRIPT_PATH = "/static/kefu/widget.js";
  const MAX_CHARS = 2000; // the server's limit for one customer message
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const PING_EVERY_MS = 25000;
  const PONG_TIMEOUT_MS = 10000;
  const CLOSE_FORBIDDEN = 4403; // the page's origin is not allowed: retrying will not help
  const DEFAULT_COLOR = "#2563eb";
  const AGENT_TYPING = "agent"; // typing-indicator key (client ids are UUIDs, never this)
  const CUSTOMER_TYPING_EVERY_MS = 3000;

  if (window.__kefuWidgetLoaded) return; // pasted twice: the first copy wins
  window.__kefuWidgetLoaded = true;

  // --- Where we come from ------------------------------------------------------------------------

  const withoutQuery = (url) => url.split(/[?#]/)[0];
  // currentScript is null when the script runs from a callback or as a module; then look for our
  // tag by its path.
  const script =
    document.currentScript ||
    Array.from(document.querySelectorAll("script[src]")).find((s) =>
      withoutQuery(s.src).endsWith(SCRIPT_PATH),
    );
  const options = (script && script.dataset) || {};
  const publicKey = options.key;
  if (!script || !publicKey) {
    console.warn("Kefu: the widget script needs a data-key attribute.");
    return;
  }
  const scriptUrl = withoutQuery(script.src);
  // Kefu may live under a path prefix: everything before /static/kefu/widget.js.
  const BASE = scriptUrl.endsWith(SCRIPT_PATH)
    ? scriptUrl.slice(0, -SCRIPT_PATH.length)
    : new URL(script.src).origin;
  const ORIGIN = new URL(BASE).origin;
  const TOKEN_KEY = `kefu:${publicKey}:visitor`;

  // --- Strings -----------------------------------------------------------------------------------

  const STRINGS = {
    en: {
      openChat: "Open chat",
      closeChat: "Close chat",
      dialog: "Chat with {name}",
      messages: "Messages",
      greeting: "Hi! How can we help you today?",
      placeholder: "Type your message…",
      send: "Send",
      human: "Talk to a human",
      reconnecting: "Reconnecting…",
      offline: "You are offline. Messages will be sent when the connection is back.",
      forbidden: "Chat is not available on this website.",
      pending: "Waiting to send…",
      typing: "Typing…",
      you: "You:",
      assistant: "Assistant:",
      agent: "Agent:",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      queued: "You are in the queue for a person. Someone will be with you shortly.",
      human_joined: "An agent has joined the conversation.",
      resolved: "This conversation has been marked as resolved.",
      closed: "This conversation has been closed.",
      bot: "You are chatting with our assistant again.",
      error: "Something went wrong. Please try again.",
      agentTyping: "{name} is typing…",
      contactName: "Name",
      contactEmail: "Email",
      contactPhone: "Phone",
      contactNote: "How can we help? (optional)",
      contactSend: "Send my details",
      contactNeeded: "Please leave an e-mail address or a phone number.",
      contactAsk:
        "Nobody is available right now. Leave your contact details and we will get back to you.",
      rate: "How did we do?",
      stars: "{n} out of 5",
      rated: "Thank you for your rating!",
      request: "Request #{id}",
      support: "Support:",
    },
    zh: {
      openChat: "打开在线客服",
      closeChat: "关闭在线客服",
      dialog: "与{name}聊天",
      messages: "消息",
      greeting: "您好！请问有什么可以帮您？",
      placeholder: "请输入您的问题…",
      send: "发送",
      human: "转人工",
      reconnecting: "正在重新连接…",
      offline: "网络已断开，恢复后将自动发送消息。",
      forbidden: "此网站暂不支持在线客服。",
      pending: "等待发送…",
      typing: "正在输入…",
      you: "我：",
      assistant: "智能助手：",
      agent: "客服：",
      helpful: "有帮助",
      notHelpful: "没有帮助",
      queued: "已为您转接人工客服，请稍候。",
      human_joined: "人工客服已加入对话。",
      resolved: "本次对话已标记为已解决。",
      closed: "本次对话已结束。",
      bot: "您正在与智能助手对话。",
      error: "出了点问题，请重试。",
      agentTyping: "{name}正在输入…",
      contactName: "姓名",
      contactEmail: "邮箱",
      contactPhone: "电话",
      contactNote: "请描述您的问题（选填）",
      contactSend: "提交联系方式",
      contactNeeded: "请留下邮箱或电话。",
      contactAsk: "目前暂无人工客服在线。请留下您的联系方式，我们会尽快与您联系。",
      rate: "请为本次服务评分",
      stars: "{n} 星（满分 5 星）",
      rated: "感谢您的评价！",
      request: "工单 #{id}",
      support: "客服：",
    },
  };

  const hasOwn = (object, key) => Object.prototype.hasOwnProperty.call(object, key);

  /** "zh" or "en" for a language tag, or "" when it is neither. */
  const languageOf = (tag) => {
    const code = String(tag || "").toLowerCase();
    return code.startsWith("zh") ? "zh" : code.startsWith("en") ? "en" : "";
  };

  // --- Small DOM helpers (text only: never HTML) -------------------------------------------------

  /** Creates an element with a class and optional text, appended to parent when given. */
  const el = (tag, className, text, parent) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  };

  const ICONS = {
    chat: "M6 4h12a3 3 0 0 1 3 3v8a3 3 0 0 1-3 3h-8l-5 4v-4.2A3 3 0 0 1 3 15V7a3 3 0 0 1 3-3z",
    down: "M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z",
    close:
      "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z",
    send: "M3 20.5 21 12 3 3.5v6.6L15 12 3 13.9z",
    // Thumbs down is this one turned over (CSS): SVG, not emoji, so it looks the same on every
    // system, including those without an emoji font.
    thumb:
      "M1 21h4V9H1v12zm22-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.5-1.1L14.2 1 7.6 7.6C7.2 8 7 8.4 7 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7c.1-.3.2-.5.2-.8v-2z",
  };
  const icon = (name, className) => {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    if (className) svg.setAttribute("class", className);
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.appendChild(path);
    return svg;
  };

  /** A client message id: random, at most 64 characters (the protocol's limit). */
  const newClientId = () => {
    const c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID(); // secure contexts only
    if (c && typeof c.getRandomValues === "function") {
      const bytes = c.getRandomValues(new Uint8Array(16));
      return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  };

  /** Full jitter: a random delay in [0, min(cap, base * 2^attempt)). */
  const backoff = (attempt) =>
    Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));

  // localStorage throws in some privacy modes and sandboxed frames: fall back to memory.
  const storage = {
    memory: {},
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch (_) {
        return this.memory[key] || null;
      }
    },
    set(key, value) {
      try {
        window.localStorage.setItem(key, value);
      } catch (_) {
        this.memory[key] = value;
      }
    },
  };

  // --- Safe Markdown -----------------------------------------------------------------------------
  //
  // The renderer lives in markdown.js, shared with the agent console. It loads next to the
  // config, and the widget connects only once it has (or failed to: answers are then plain text).

  let renderMarkdown = (container, source) => {
    container.textContent = source;
  };
  const markdownLoaded = new Promise((resolve) => {
    const tag = document.createElement("script");
    tag.src = `${BASE}/static/kefu/markdown.js`;
    tag.async = true;
    tag.onload = tag.onerror = () => {
      if (window.KefuMarkdown) renderMarkdown = window.KefuMarkdown.render;
      resolve();
    };
    (document.head || document.documentElement).appendChild(tag);
  });

  // --- Styles ------------------------------------------------------------------------------------

  const STYLESHEET = `
:host { all: initial; }
[hidden] { display: none !important; }
*, *::before, *::after { box-sizing: border-box; }
.root {
  --accent: ${DEFAULT_COLOR}; --on-accent: #fff;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "PingFang SC", "Hiragino Sans GB",
    "Microsoft YaHei", "Noto Sans CJK SC", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1f2937; text-align: left; direction: ltr; -webkit-font-smoothing: antialiased;
}
button { font: inherit; color: inherit; cursor: pointer; margin: 0; }
:focus { outline: none; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }

.launcher { position: fixed; bottom: 20px; right: 20px; width: 56px; height: 56px; padding: 0;
  display: flex; align-items: center; justify-content: center; border: 0; border-radius: 50%;
  background: var(--accent); color: var(--on-accent); box-shadow: 0 6px 20px rgba(0,0,0,.25);
  transition: transform .15s ease; }
.launcher:hover { transform: scale(1.06); }
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
.launcher .when-open, .open .launcher .when-closed { display: none; }
.open .launcher .when-open { display: block; }
.launcher.unread::after { content: ""; position: absolute; top: 3px; right: 3px; width: 12px;
  height: 12px; border-radius: 50%; background: #ef4444; border: 2px solid #fff; }
.left .launcher { right: auto; left: 20px; }

.panel { position: fixed; bottom: 88px; right: 20px; width: 380px;
  height: min(640px, calc(100vh - 108px)); display: flex;
  flex-direction: column; overflow: hidden; background: #fff; border-radius: 16px;
  box-shadow: 0 12px 48px rgba(0,0,0,.22); animation: kefu-in .18s ease-out; }
.left .panel { right: auto; left: 20px; }
@keyframes kefu-in { from { opacity: 0; transform: translateY(8px); } }

.header { display: flex; align-items: center; gap: 8px; padding: 12px 8px 12px 16px;
  background: var(--accent); color: var(--on-accent); }
.header :focus-visible { outline-color: currentColor; }
.title { flex: 1; min-width: 0; font-size: 16px; font-weight: 600; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.icon-button { width: 36px; height: 36px; padding: 6px; border: 0; border-radius: 8px;
  background: transparent; display: flex; align-items: center; justify-content: center; }
.icon-button:hover { background: rgba(127,127,127,.2); }
.icon-button svg { width: 22px; height: 22px; fill: currentColor; }

.notice { padding: 6px 12px; font-size: 12px; text-align: center; background: #fef3c7;
  color: #92400e; }
.notice.error { background: #fee2e2; color: #991b1b; }

.list { flex: 1; overflow-y: auto; overscroll-behavior: contain; padding: 16px 12px;
  display: flex; flex-direction: column; gap: 10px; background: #f7f8fa; }
.msg { max-width: 85%; padding: 8px 12px; border-radius: 16px; overflow-wrap: anywhere;
  word-break: break-word; }
.customer { align-self: flex-end; background: var(--accent); color: var(--on-accent);
  border-bottom-right-radius: 4px; }
.customer .text { white-space: pre-wrap; }
/* Dimmed only when the ack is slow to come, so a normal send does not flicker. */
.customer.pending { animation: kefu-pending 0s .4s both; }
@keyframes kefu-pending { to { opacity: .6; } }
.meta { font-size: 11px; opacity: .85; margin-top: 2px; }
.assistant, .agent, .greeting, .typing { align-self: flex-start; background: #fff;
  border: 1px solid #e5e7eb; border-bottom-left-radius: 4px; }
.agent { border-color: var(--accent); }
.who { display: block; font-size: 11px; font-weight: 600; color: #6b7280; }
.sys { align-self: center; max-width: 90%; font-size: 12px; color: #6b7280; text-align: center; }
.sys.error { color: #b91c1c; }

.body p { margin: 0 0 8px; }
.body > :last-child { margin-bottom: 0; }
.body ul, .body ol { margin: 0 0 8px; padding-left: 22px; }
.body li { margin: 2px 0; }
.body code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; background: #f1f5f9; padding: 1px 4px; border-radius: 4px; }
.body pre { margin: 0 0 8px; padding: 8px 10px; overflow-x: auto; background: #0f172a;
  color: #e2e8f0; border-radius: 8px; }
.body pre code { background: none; padding: 0; color: inherit; white-space: pre; }
.body a { color: #1d4ed8; text-decoration: underline; }
.interrupted .body { color: #6b7280; }

.feedback { display: flex; gap: 6px; margin-top: 6px; }
.feedback button { display: flex; padding: 3px 9px; background: #fff; color: #9ca3af;
  border: 1px solid #e5e7eb; border-radius: 999px; }
.feedback svg { width: 14px; height: 14px; fill: currentColor; }
.feedback .down svg { transform: rotate(180deg); }
.feedback button:hover { color: #4b5563; }
.feedback button[aria-pressed="true"] { color: var(--accent); border-color: var(--accent); }

.typing { display: flex; align-items: center; gap: 4px; padding: 12px 14px; }
.typing span { margin-right: 4px; font-size: 12px; color: #6b7280; }
.typing i { width: 7px; height: 7px; border-radius: 50%; background: #9ca3af;
  animation: kefu-dot 1.2s infinite ease-in-out; }
.typing i:nth-child(2) { animation-delay: .15s; }
.typing i:nth-child(3) { animation-delay: .3s; }
@keyframes kefu-dot { 0%, 60%, 100% { opacity: .3; transform: none; }
  30% { opacity: 1; transform: translateY(-3px); } }

.card { align-self: stretch; max-width: none; background: #fff; border: 1px solid #e5e7eb; }
.contact { display: flex; flex-direction: column; gap: 8px; }
.contact label { display: flex; flex-direction: column; gap: 2px; font-size: 12px;
  color: #4b5563; }
.contact input, .contact textarea { padding: 7px 10px; border-radius: 8px; font-size: 14px;
  resize: vertical; }
.primary { padding: 8px 12px; border: 0; border-radius: 8px; font-weight: 600;
  background: var(--accent); color: var(--on-accent); }
.stars { display: flex; gap: 4px; margin-top: 6px; }
.stars button { width: 36px; height: 36px; padding: 0; font-size: 22px; line-height: 1;
  border: 0; border-radius: 8px; background: transparent; color: #d1d5db; }
.stars button:hover, .stars button.on { color: #f59e0b; }
.ticket .meta { color: #6b7280; }
.ticket .reply { margin-top: 6px; padding-top: 6px; border-top: 1px solid #f1f5f9;
  white-space: pre-wrap; }

.footer { padding: 8px 10px 10px; border-top: 1px solid #e5e7eb; background: #fff; }
.human { display: block; margin: 0 0 8px auto; padding: 3px 10px; font-size: 12px;
  background: #fff; border: 1px solid #d1d5db; border-radius: 999px; color: #374151; }
.human.prominent { margin: 0 auto 8px; padding: 6px 16px; font-size: 14px; font-weight: 600;
  background: var(--accent); color: var(--on-accent); border-color: var(--accent); }
.composer { display: flex; gap: 8px; align-items: flex-end; }
textarea, input { min-width: 0; margin: 0; font: inherit; color: #111827; background: #fff;
  border: 1px solid #d1d5db; border-radius: 12px; }
textarea:focus, input:focus { border-color: var(--accent); }
textarea:focus-visible, input:focus-visible { outline: 2px solid var(--accent);
  outline-offset: 0; }
.composer textarea { flex: 1; height: 40px; max-height: 120px; padding: 9px 12px;
  resize: none; }
.send { width: 40px; height: 40px; flex: none; padding: 8px; border: 0; border-radius: 12px;
  background: var(--accent); color: var(--on-accent); }
.send svg { width: 22px; height: 22px; fill: currentColor; display: block; }

@media (max-width: 480px) {
  .panel, .left .panel { inset: 0; width: auto; height: auto; min-height: 0;
    border-radius: 0; }
  .open .launcher { display: none; }
  /* Below 16px, mobile Safari zooms into the page when a field gets focus. */
  .composer textarea, .contact input, .contact textarea { font-size: 16px; }
}
@media (prefers-reduced-motion: reduce) {
  * { animation: none !important; transition: none !important; }
}
`;

  // --- State -------------------------------------------------------------------------------------

  const state = {
    lang: languageOf(options.lang) || languageOf(navigator.language),
    status: "bot", // the conversation's status, from welcome and status frames
    ws: null,
    welcomed: false, // hello answered on the current socket: messages may be sent
    started: false, // connected at least once: from then on keep reconnecting
    forbidden: false,
    attempt: 0,
    reconnectTimer: 0,
    pingTimer: 0,
    pongTimer: 0,
    pingSeq: 0,
    identity: null,
    handoffWanted: false,
    // Customer messages not yet acknowledged, in the order typed: {id, text, el, sentOn}.
    outbox: [],
    answers: new Map(), // reply_to -> {el, body, text} of answers streaming now
    typing: new Map(), // reply_to (or AGENT_TYPING) -> the typing indicator element
    typingTimers: new Map(),
    customerTypingSentAt: 0,
    whenReady: [], // API calls made before the UI exists
  };
  let ui = null;
  const t = (key) => STRINGS[state.lang || "en"][key];

  // --- The user interface ------------------------------------------------------------------------

  const accentColors = (color) => {
    const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color || "") ? color : DEFAULT_COLOR;
    const full = hex.length === 4 ? hex.replace(/^#(.)(.)(.)$/, "#$1$1$2$2$3$3") : hex;
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(full.slice(i, i + 2), 16) / 255);
    const lin = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    const luminance = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
    // White text unless the accent is light enough for dark text to read better.
    return { accent: full, onAccent: luminance > 0.4 ? "#111827" : "#ffffff" };
  };

  const build = (config) => {
    const host = document.createElement("div");
    host.setAttribute("data-kefu-widget", "");
    // Inline !important beats any page stylesheet rule, including `* { … !important }`.
    host.style.cssText =
      "all: initial !important; position: fixed !important; top: 0 !important;" +
      " left: 0 !important; width: 0 !important; height: 0 !important;" +
      " display: block !important; z-index: 2147483000 !important;";
    const root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      // Constructed stylesheets also work under a page CSP that forbids inline <style>.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLESHEET);
      root.adoptedStyleSheets = [sheet];
    } else {
      el("style", "", STYLESHEET, root);
    }

    const position = (options.position || config.position) === "left" ? "left" : "right";
    const colors = accentColors(options.color || config.color);
    const name = config.name || "Kefu";

    const frame = el("div", `root ${position}`, null, root);
    frame.style.setProperty("--accent", colors.accent);
    frame.style.setProperty("--on-accent", colors.onAccent);

    const panel = el("div", "panel", null, frame);
    panel.id = "kefu-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", t("dialog").replace("{name}", name));

    const header = el("div", "header", null, panel);
    el("div", "title", name, header);
    const closeButton = el("button", "icon-button close", null, header);
    closeButton.type = "button";
    closeButton.setAttribute("aria-label", t("closeChat"));
    closeButton.appendChild(icon("close"));

    const notice = el("div", "notice", null, panel);
    notice.setAttribute("role", "status");
    notice.hidden = true;

    const list = el("div", "list", null, panel);
    list.setAttribute("role", "log");
    list.setAttribute("aria-live", "polite");
    list.setAttribute("aria-label", t("messages"));
    const greeting = el("div", "msg greeting", null, list);
    el("div", "body", config.greeting || t("greeting"), greeting);

    const footer = el("div", "footer", null, panel);
    const human = el("button", "human", t("human"), footer);
    human.type = "button";
    const composer = el("form", "composer", null, footer);
    const input = el("textarea", "", null, composer);
    input.rows = 1;
    input.maxLength = MAX_CHARS;
    input.placeholder = t("placeholder");
    input.setAttribute("aria-label", t("placeholder"));
    const send = el("button", "send", null, composer);
    send.type = "submit";
    send.setAttribute("aria-label", t("send"));
    send.appendChild(icon("send"));

    const launcher = el("button", "launcher", null, frame);
    launcher.type = "button";
    launcher.setAttribute("aria-label", t("openChat"));
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", panel.id);
    launcher.append(icon("chat", "when-closed"), icon("down", "when-open"));

    launcher.addEventListener("click", () => setOpen(panel.hidden));
    closeButton.addEventListener("click", () => setOpen(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        setOpen(false);
      }
    });
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      submitInput();
    });
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line; Enter that confirms an IME composition (Chinese
      // pinyin input) must do neither.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        submitInput();
      }
    });
    input.addEventListener("input", () => {
      fitInput();
      noteCustomerTyping();
    });
    human.addEventListener("click", requestHandoff);

    return { host, root, frame, panel, notice, list, human, input, launcher };
  };

  const fitInput = () => {
    const { input } = ui;
    input.style.height = "";
    input.style.height = `${Math.min(input.scrollHeight + 2, 120)}px`;
  };

  /** Tells the agent the customer is typing (throttled; only while a person has the chat). */
  const noteCustomerTyping = () => {
    const now = Date.now();
    if (!withPerson() || now - state.customerTypingSentAt < CUSTOMER_TYPING_EVERY_MS) return;
    if (sendFrame({ type: "typing" })) state.customerTypingSentAt = now;
  };

  const withPerson = () => state.status === "queued" || state.status === "human";

  const mount = () => {
    const attach = () => document.body.appendChild(ui.host);
    if (document.body) attach();
    else document.addEventListener("DOMContentLoaded", attach, { once: true });
  };

  const isOpen = () => Boolean(ui && !ui.panel.hidden);

  const setOpen = (open) => {
    if (!ui) {
      state.whenReady.push(() => setOpen(open));
      return;
    }
    const hadFocus = Boolean(ui.root.activeElement);
    ui.panel.hidden = !open;
    ui.frame.classList.toggle("open", open);
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label", t(open ? "closeChat" : "openChat"));
    if (open) {
      ui.launcher.classList.remove("unread");
      ui.input.focus();
      scrollToEnd(true);
      connect();
    } else if (hadFocus) {
      ui.launcher.focus(); // focus returns where the dialog came from
    }
  };

  const setNotice = (kind) => {
    if (!ui) return;
    ui.notice.hidden = !kind;
    ui.notice.className = kind === "forbidden" ? "notice error" : "notice";
    ui.notice.dataset.kind = kind || "";
    ui.notice.textContent = kind ? t(kind) : "";
  };

  const nearEnd = () => ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 80;
  const scrollToEnd = (force) => {
    if (force || nearEnd()) ui.list.scrollTop = ui.list.scrollHeight;
  };

  /** Adds a message element at the end of the list, keeping the view pinned to the end. */
  const appendToList = (node) => {
    const follow = nearEnd();
    ui.list.appendChild(node);
    scrollToEnd(follow);
    if (!isOpen()) ui.launcher.classList.add("unread");
    return node;
  };

  const customerElement = (text, { messageId, clientId, pending } = {}) => {
    const node = el("div", "msg customer");
    el("span", "sr", t("you"), node);
    el("div", "text", text, node); // plain text: customers' messages are never Markdown
    if (messageId != null) node.dataset.mid = String(messageId);
    if (clientId) node.dataset.cid = clientId;
    if (pending) {
      node.classList.add("pending");
      if (!ready()) showWaiting(node);
    }
    return node;
  };

  /** "Waiting to send…" under a message that cannot go out now (offline, reconnecting). */
  const showWaiting = (node) => {
    if (!node.querySelector(".meta")) el("div", "meta", t("pending"), node);
  };

  const markSent = (node, messageId) => {
    node.classList.remove("pending");
    const meta = node.querySelector(".meta");
    if (meta) meta.remove();
    if (messageId != null) node.dataset.mid = String(messageId);
  };

  const answerElement = (role, { messageId, source, author } = {}) => {
    const node = el("div", `msg ${role}`);
    el("span", "sr", t(role === "agent" ? "agent" : "assistant"), node);
    if (role === "agent") el("span", "who", author || t("agent").replace(/[:：]$/, ""), node);
    const body = el("div", "body", null, node);
    if (source) node.dataset.source = source;
    if (messageId != null) {
      node.dataset.mid = String(messageId);
      if (role === "assistant") addFeedback(node, messageId);
    }
    return { node, body };
  };

  const addFeedback = (node, messageId) => {
    if (node.querySelector(".feedback")) return;
    const bar = el("div", "feedback", null, node);
    for (const [value, label] of [
      ["up", "helpful"],
      ["down", "notHelpful"],
    ]) {
      const button = el("button", value, null, bar);
      button.appendChild(icon("thumb"));
      button.type = "button";
      button.dataset.value = value;
      button.setAttribute("aria-label", t(label));
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () =>
        sendFrame({ type: "feedback", message_id: messageId, value }),
      );
    }
  };

  const systemLine = (text, isError) => {
    const node = el("div", isError ? "sys error" : "sys", text);
    if (isError) node.setAttribute("role", "alert");
    return appendToList(node);
  };

  /** A typing indicator: the assistant's for one question (keyed by its client id), or an
   * agent's (key AGENT_TYPING, with the agent's name shown). Safety timeout: an indicator never
   * outlives a lost frame for long. */
  const showTyping = (key, label) => {
    clearTimeout(state.typingTimers.get(key));
    state.typingTimers.set(key, setTimeout(() => hideTyping(key), label ? 6000 : 60000));
    if (state.typing.has(key)) return;
    const node = el("div", "msg typing");
    node.setAttribute("role", "img");
    node.setAttribute("aria-label", label || t("typing"));
    if (label) el("span", "", label, node);
    for (let i = 0; i < 3; i++) el("i", "", null, node);
    state.typing.set(key, appendToList(node));
  };

  const hideTyping = (key) => {
    const node = state.typing.get(key);
    if (node) node.remove();
    state.typing.delete(key);
  };

  const hideAllTyping = () => {
    for (const node of state.typing.values()) node.remove();
    state.typing.clear();
  };

  /**
   * Nobody could take the conversation: a form for the customer's details (→ a ticket).
   * `draft`: what was typed in it before the list was rebuilt (a reconnect).
   */
  const showContactForm = (draft = {}) => {
    if (ui.list.querySelector(".contact")) return;
    const form = el("form", "msg card contact");
    const fields = [
      ["name", "text", "contactName", "name"],
      ["email", "email", "contactEmail", "email"],
      ["phone", "tel", "contactPhone", "tel"],
      ["text", "", "contactNote", "off"],
    ];
    for (const [name, type, label, autocomplete] of fields) {
      const field = el("label", "", null, form);
      el("span", "", t(label), field);
      const input = el(type ? "input" : "textarea", "", null, field);
      input.name = name;
      if (type) input.type = type;
      else input.rows = 2;
      input.autocomplete = autocomplete;
      input.maxLength = type ? 254 : MAX_CHARS;
      if (typeof draft[name] === "string") input.value = draft[name];
    }
    el("button", "primary", t("contactSend"), form).type = "submit";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const details = { type: "contact" };
      for (const [name] of fields) details[name] = form.elements[name].value.trim();
      if (!details.email && !details.phone) {
        systemLine(t("contactNeeded"), true);
        form.elements.email.focus();
        return;
      }
      if (!sendFrame(details)) systemLine(t("reconnecting"), true);
    });
    appendToList(form);
    scrollToEnd(true);
  };

  /** What the customer typed in the contact form, if it is shown. */
  const contactDraft = () => {
    const form = ui.list.querySelector(".contact");
    if (!form) return {};
    const draft = {};
    for (const input of form.querySelectorAll("[name]")) draft[input.name] = input.value;
    return draft;
  };

  /** The agent resolved the conversation: five stars to rate it. */
  const showRating = (text) => {
    if (ui.list.querySelector(".rating")) return;
    const box = el("div", "msg card rating");
    el("div", "", text || t("rate"), box);
    const stars = el("div", "stars", null, box);
    stars.setAttribute("role", "group");
    stars.setAttribute("aria-label", t("rate"));
    for (let n = 1; n <= 5; n++) {
      const star = el("button", "", "★", stars);
      star.type = "button";
      star.setAttribute("aria-label", t("stars").replace("{n}", n));
      star.addEventListener("click", () => {
        if (!sendFrame({ type: "rating", value: n })) return;
        stars.querySelectorAll("button").forEach((b, i) => b.classList.toggle("on", i < n));
      });
    }
    appendToList(box);
  };

  /** The customer's tickets (left when nobody was there) with the replies they got. */
  const ticketElement = (ticket) => {
    const card = el("div", "msg card ticket");
    el("strong", "", t("request").replace("{id}", ticket.id), card);
    if (ticket.subject) card.append(` · ${ticket.subject}`);
    if (ticket.status) el("div", "meta", ticket.status, card);
    for (const reply of Array.isArray(ticket.replies) ? ticket.replies : []) {
      const line = el("div", "reply", null, card);
      el("strong", "", reply.from_customer ? t("you") : t("support"), line);
      line.append(` ${reply.text}`); // plain text
    }
    return card;
  };

  const updateHumanButton = () => {
    if (!ui) return;
    ui.human.hidden = withPerson() || state.status === "closed";
    if (withPerson()) ui.human.classList.remove("prominent");
  };

  // --- Sending -----------------------------------------------------------------------------------

  const ready = () => Boolean(state.ws && state.welcomed && state.ws.readyState === 1);

  const sendFrame = (frame) => {
    if (!ready()) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  };

  const transmit = (item) => {
    if (sendFrame({ type: "message", id: item.id, text: item.text })) item.sentOn = state.ws;
  };

  /** Shows the customer's message at once (pending until acknowledged) and sends or queues it. */
  const sendCustomerMessage = (raw) => {
    const text = String(raw == null ? "" : raw).trim().slice(0, MAX_CHARS);
    if (!text) return;
    const item = { id: newClientId(), text, el: null, sentOn: null };
    item.el = appendToList(customerElement(text, { clientId: item.id, pending: true }));
    scrollToEnd(true);
    state.outbox.push(item);
    if (ready()) transmit(item);
    else connect(); // sent after the next welcome
  };

  const submitInput = () => {
    const text = ui.input.value;
    if (!text.trim()) return;
    ui.input.value = "";
    fitInput();
    sendCustomerMessage(text);
  };

  const requestHandoff = () => {
    if (!sendFrame({ type: "handoff" })) {
      state.handoffWanted = true;
      connect();
    }
  };

  // --- The connection ----------------------------------------------------------------------------

  const socketUrl = (path) => `${ORIGIN.replace(/^http/, "ws")}${path}`;

  const sendHello = () => {
    const hello = { type: "hello", language: state.lang === "zh" ? "zh-CN" : "en" };
    const token = storage.get(TOKEN_KEY);
    if (token) hello.visitor_token = token;
    if (state.identity) hello.identity = state.identity;
    state.welcomed = false;
    state.ws.send(JSON.stringify(hello));
  };

  const connect = () => {
    if (!ui || state.ws || state.forbidden) return;
    state.started = true;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = 0;
    let ws;
    try {
      ws = new WebSocket(socketUrl(ui.socketPath));
    } catch (_) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.welcomed = false;
    ws.onopen = () => {
      if (ws !== state.ws) return;
      sendHello();
      startPing();
    };
    ws.onmessage = (event) => {
      if (ws !== state.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (frame && typeof frame.type === "string") handleFrame(frame);
    };
    ws.onclose = (event) => dropConnection(ws, event.code);
  };

  /** Forgets a socket (closed, or silent for too long) and plans the next attempt. */
  const dropConnection = (ws, code) => {
    if (ws !== state.ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState < 2) ws.close();
    state.ws = null;
    state.welcomed = false;
    stopPing();
    hideAllTyping();
    ui.list.removeAttribute("aria-busy");
    for (const item of state.outbox) if (item.el) showWaiting(item.el);
    if (code === CLOSE_FORBIDDEN) {
      state.forbidden = true;
      setNotice("forbidden");
      return;
    }
    setNotice(navigator.onLine === false ? "offline" : "reconnecting");
    scheduleReconnect();
  };

  const scheduleReconnect = () => {
    clearTimeout(state.reconnectTimer);
    const delay = backoff(state.attempt);
    state.attempt += 1;
    state.reconnectTimer = setTimeout(connect, delay);
  };

  /** Connects now rather than at the end of the backoff (network back, tab visible again). */
  const reconnectNow = () => {
    if (!state.started || state.ws || state.forbidden) return;
    state.attempt = 0;
    connect();
  };

  const startPing = () => {
    stopPing();
    state.pingTimer = setInterval(() => {
      if (!ready()) return;
      state.pingSeq += 1;
      sendFrame({ type: "ping", id: state.pingSeq });
      clearTimeout(state.pongTimer);
      // No pong: the connection is dead without the browser having noticed (sleeping laptop,
      // changed network). Closing politely could take minutes; drop it and reconnect.
      const ws = state.ws;
      state.pongTimer = setTimeout(() => dropConnection(ws, 0), PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  };

  const stopPing = () => {
    clearInterval(state.pingTimer);
    clearTimeout(state.pongTimer);
  };

  // --- Frames from the server --------------------------------------------------------------------

  const handlers = {
    welcome(frame) {
      state.welcomed = true;
      state.attempt = 0;
      if (typeof frame.visitor_token === "string") storage.set(TOKEN_KEY, frame.visitor_token);
      state.status = frame.status || "bot";
      setNotice(null);
      const draft = contactDraft();
      renderHistory(
        Array.isArray(frame.history) ? frame.history : [],
        Array.isArray(frame.tickets) ? frame.tickets : [],
      );
      // Requests the customer has not answered yet, asked before this socket (or on it): the
      // rebuilt list has no trace of them.
      const pending = Array.isArray(frame.pending) ? frame.pending : [];
      if (pending.includes("contact")) {
        systemLine(t("contactAsk"));
        showContactForm(draft);
      }
      if (pending.includes("rating")) showRating();
      updateHumanButton();
      // Unacknowledged messages go (again) now, in order; the server drops repeats.
      for (const item of state.outbox) if (item.sentOn !== state.ws) transmit(item);
      if (state.handoffWanted) {
        state.handoffWanted = false;
        sendFrame({ type: "handoff" });
      }
    },

    ack(frame) {
      if (frame.rating != null) {
        const box = ui.list.querySelector(".rating");
        if (box) box.remove();
        systemLine(t("rated"));
        return;
      }
      if (frame.feedback != null) {
        const node = findByMessageId(frame.feedback);
        if (node) {
          for (const button of node.querySelectorAll(".feedback button")) {
            button.setAttribute("aria-pressed", String(button.dataset.value === frame.value));
          }
        }
        return;
      }
      const index = state.outbox.findIndex((item) => item.id === frame.id);
      if (index < 0) return;
      const [item] = state.outbox.splice(index, 1);
      const shown = findByMessageId(frame.message_id);
      if (frame.duplicate) {
        // Stored before, its ack lost with the old socket: the history may already show it.
        if (!item.el) return; // claimed by a history entry, see renderHistory
        if (shown && shown !== item.el) item.el.remove();
        else markSent(item.el, frame.message_id);
        return;
      }
      if (!item.el) {
        // The history entry that claimed it was another message with the same text after all.
        item.el = appendToList(customerElement(item.text));
      }
      markSent(item.el, frame.message_id);
      if (!withPerson()) showTyping(item.id);
    },

    delta(frame) {
      if (typeof frame.text !== "string") return;
      let answer = state.answers.get(frame.reply_to);
      if (!answer) {
        answer = { ...answerElement("assistant"), text: "" };
        answer.node.dataset.replyTo = frame.reply_to || "";
        const typing = state.typing.get(frame.reply_to);
        if (typing) {
          typing.replaceWith(answer.node); // the answer takes the indicator's place
          state.typing.delete(frame.reply_to);
        } else {
          appendToList(answer.node);
        }
        state.answers.set(frame.reply_to, answer);
        ui.list.setAttribute("aria-busy", "true"); // announce the answer once, when complete
      }
      const follow = nearEnd();
      answer.text += frame.text;
      renderMarkdown(answer.body, answer.text);
      scrollToEnd(follow);
    },

    done(frame) {
      hideTyping(frame.reply_to);
      const answer = state.answers.get(frame.reply_to);
      state.answers.delete(frame.reply_to);
      if (!state.answers.size) ui.list.removeAttribute("aria-busy");
      if (answer) {
        const follow = nearEnd();
        if (frame.source) answer.node.dataset.source = frame.source;
        if (frame.message_id != null) {
          answer.node.dataset.mid = String(frame.message_id);
          addFeedback(answer.node, frame.message_id);
        }
        if (frame.interrupted) answer.node.classList.add("interrupted");
        scrollToEnd(follow);
      }
      if (!isOpen()) ui.launcher.classList.add("unread");
      if (frame.offer_handoff && !ui.human.hidden) ui.human.classList.add("prominent");
    },

    status(frame) {
      if (typeof frame.status !== "string") return;
      state.status = frame.status;
      updateHumanButton();
      if (withPerson()) hideAllTyping();
      // The server's text says more (queue position, the agent's name) and is already in the
      // customer's language; ours is the fallback.
      const key = frame.status === "human" ? "human_joined" : frame.status;
      const text = frame.text || (hasOwn(STRINGS.en, key) ? t(key) : "");
      if (text) systemLine(text);
      if (frame.collect_contact) showContactForm();
    },

    agent_message(frame) {
      hideTyping(AGENT_TYPING);
      if (typeof frame.text !== "string" || findByMessageId(frame.message_id)) return;
      const { node, body } = answerElement("agent", {
        messageId: frame.message_id,
        author: typeof frame.author === "string" ? frame.author : "",
      });
      renderMarkdown(body, frame.text);
      appendToList(node);
    },

    typing(frame) {
      if (frame.role !== "agent") return;
      const name = typeof frame.author === "string" && frame.author ? frame.author : t("agent");
      showTyping(AGENT_TYPING, t("agentTyping").replace("{name}", name.replace(/[:：]$/, "")));
    },

    ticket(frame) {
      const form = ui.list.querySelector(".contact");
      if (form) form.remove();
      if (typeof frame.text === "string") systemLine(frame.text);
    },

    rating_request(frame) {
      showRating(typeof frame.text === "string" ? frame.text : "");
    },

    error(frame) {
      if (frame.reply_to) hideTyping(frame.reply_to);
      else hideAllTyping();
      // The server's text is already in the customer's language.
      systemLine(typeof frame.text === "string" && frame.text ? frame.text : t("error"), true);
    },

    pong() {
      clearTimeout(state.pongTimer);
    },
  };

  const handleFrame = (frame) => {
    if (hasOwn(handlers, frame.type)) handlers[frame.type](frame);
  };

  const findByMessageId = (messageId) =>
    messageId == null
      ? null
      : ui.list.querySelector(`.msg[data-mid="${CSS.escape(String(messageId))}"]`);

  /**
   * Replaces the list with the server's history (on every welcome: first load, reconnect,
   * identify), then shows the still-unacknowledged messages after it, so nothing appears twice.
   */
  const renderHistory = (history, tickets) => {
    const { list } = ui;
    for (const node of Array.from(list.children)) {
      if (!node.classList.contains("greeting")) node.remove();
    }
    for (const ticket of tickets) {
      if (ticket && ticket.id != null) list.appendChild(ticketElement(ticket));
    }
    state.answers.clear();
    state.typing.clear();
    list.removeAttribute("aria-busy");
    const unclaimed = [];
    for (const item of history) {
      if (!item || typeof item.text !== "string") continue;
      if (item.role === "customer") {
        const node = list.appendChild(customerElement(item.text, { messageId: item.id }));
        unclaimed.push(node);
      } else if (item.role === "assistant" || item.role === "agent") {
        const { node, body } = answerElement(item.role, {
          messageId: item.id,
          source: item.source,
        });
        renderMarkdown(body, item.text);
        list.appendChild(node);
      }
    }
    for (const item of state.outbox) {
      // A message sent before but never acknowledged may have been stored: when the history
      // shows a message with the same text, let that entry stand for it until the (duplicate)
      // ack settles it, instead of showing it twice meanwhile.
      const twin =
        item.sentOn &&
        unclaimed.find((node) => node.querySelector(".text").textContent === item.text);
      if (twin) {
        unclaimed.splice(unclaimed.indexOf(twin), 1);
        item.el = null;
      } else {
        item.el = list.appendChild(customerElement(item.text, { clientId: item.id, pending: true }));
      }
    }
    scrollToEnd(true);
  };

  // --- Start -------------------------------------------------------------------------------------

  const start = (config) => {
    state.lang = state.lang || languageOf(config.language) || "en";
    ui = build(config);
    ui.socketPath = config.socket_path || `/ws/widget/${encodeURIComponent(publicKey)}/`;
    mount();
    updateHumanButton();
    window.addEventListener("online", reconnectNow);
    window.addEventListener("offline", () => {
      if (!state.ws && state.started) setNotice("offline");
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") reconnectNow();
    });
    const queued = state.whenReady.splice(0);
    if (options.open === "true") setOpen(true);
    for (const call of queued) call();
  };

  const loadConfig = async (attempt = 0) => {
    try {
      const response = await fetch(`${BASE}/widget/${encodeURIComponent(publicKey)}/config`, {
        credentials: "omit",
      });
      if (response.status === 403 || response.status === 404) {
        console.warn(`Kefu: the widget is not available here (HTTP ${response.status}).`);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const config = await response.json();
      await markdownLoaded;
      start(config);
    } catch (_) {
      setTimeout(() => loadConfig(attempt + 1), BACKOFF_BASE_MS + backoff(attempt));
    }
  };

  // --- Public API --------------------------------------------------------------------------------

  const whenReady = (fn) => (ui ? fn() : state.whenReady.push(fn));

  const api = {
    open: () => setOpen(true),
    close: () => setOpen(false),
    ask: (text) =>
      whenReady(() => {
        setOpen(true);
        sendCustomerMessage(text);
      }),
    identify: (person) => {
      const p = person || {};
      state.identity = {
        external_id: String(p.externalId || p.external_id || ""),
        signature: String(p.signature || ""),
        name: String(p.name || ""),
        email: String(p.email || ""),
      };
      // A new hello on the open socket; otherwise it goes with the next connection's hello.
      if (state.ws && state.ws.readyState === 1) sendHello();
    },
  };
  const runCall = (call) => {
    const [name, ...args] = Array.from(call || []);
    if (typeof api[name] === "function") api[name](...args);
  };
  const earlyCalls = (window.Kefu && Array.isArray(window.Kefu.q) && window.Kefu.q) || [];
  api.q = { push: (...calls) => calls.forEach(runCall) };
  window.Kefu = api;
  earlyCalls.forEach(runCall);

  loadConfig();
})();
