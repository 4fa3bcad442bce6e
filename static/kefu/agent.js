/* Kefu agent console: the queue, my conversations and one open conversation, live over
 * /ws/agent/. Customers' text is put into the page with textContent; answers and agents' replies
 * are rendered by the widget's safe Markdown renderer (markdown.js, loaded before this script),
 * which builds elements from text nodes too: customer and model text never becomes markup. */
(function () {
  "use strict";
  var root = document.getElementById("kefu-agent");
  if (!root) return;
  var t = JSON.parse(document.getElementById("kefu-agent-strings").textContent);
  var el = function (id) { return document.getElementById(id); };
  var socket = null, current = null, retry = 0, typingTimer = null, lastTyping = 0;

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  // A customer who gave no name or e-mail is "Visitor #<customer id>": stable and readable.
  function customerName(customer) {
    return customer.name || t.visitor.replace("{number}", customer.id);
  }

  function messageText(m) {
    var text = node("div", "kefu-text");
    if (m.role === "customer" || m.role === "system" || !window.KefuMarkdown) {
      text.className += " kefu-plain";
      text.textContent = m.text;
    } else {
      window.KefuMarkdown.render(text, m.text);
    }
    return text;
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function renderList(listId, items, emptyText) {
    var list = el(listId);
    list.textContent = "";
    if (!items.length) { list.appendChild(node("li", "kefu-empty", emptyText)); return; }
    items.forEach(function (item) {
      var li = node("li", "kefu-item" + (current && current.id === item.id ? " kefu-active" : ""));
      var button = node("button", "kefu-open", customerName(item.customer) + " · #" + item.id);
      button.type = "button";
      button.setAttribute("data-conversation", item.id);
      button.addEventListener("click", function () { send({type: "open", conversation_id: item.id}); });
      li.appendChild(button);
      if (item.reason) li.appendChild(node("span", "kefu-reason", t.reasons[item.reason] || item.reason));
      list.appendChild(li);
    });
  }

  function renderConversation(c) {
    current = c;
    el("kefu-empty-detail").hidden = true;
    el("kefu-detail").hidden = false;
    var name = customerName(c.customer);
    el("kefu-customer").textContent = name + (c.customer.email && c.customer.email !== name ? " <" + c.customer.email + ">" : "");
    el("kefu-status").textContent = t.statuses[c.status] || c.status;
    el("kefu-accept").hidden = c.status !== "queued";
    var mine = c.status === "human";
    ["kefu-resolve", "kefu-handback", "kefu-transfer-box"].forEach(function (id) { el(id).hidden = !mine; });
    var log = el("kefu-messages");
    log.textContent = "";
    c.messages.forEach(function (m) {
      var item = node("li", "kefu-msg kefu-" + m.role + (m.internal ? " kefu-note" : ""));
      var who = m.internal ? t.note : (t.roles[m.role] || m.role);
      if (m.role === "assistant" && m.source) who += " · " + m.source + (m.knowledge && m.knowledge.length ? " · " + m.knowledge.join(", ") : "");
      item.appendChild(node("div", "kefu-who", who));
      item.appendChild(messageText(m));
      log.appendChild(item);
    });
    log.scrollTop = log.scrollHeight;
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "lists":
        renderList("kefu-queue", frame.queue, t.queueEmpty);
        renderList("kefu-mine", frame.mine, t.mineEmpty);
        if (current) send({type: "open", conversation_id: current.id});
        break;
      case "conversation": renderConversation(frame); break;
      case "conversation_updated":
      case "customer_message":
        var id = frame.conversation_id || frame.id;
        if (current && current.id === id) send({type: "open", conversation_id: id});
        break;
      case "customer_typing":
        if (current && current.id === frame.conversation_id) {
          el("kefu-typing").hidden = false;
          clearTimeout(typingTimer);
          typingTimer = setTimeout(function () { el("kefu-typing").hidden = true; }, 3000);
        }
        break;
      case "draft": el("kefu-reply").value = frame.text; el("kefu-reply").focus(); break;
      case "agents":
        var select = el("kefu-transfer-to");
        select.textContent = "";
        frame.agents.forEach(function (a) {
          var option = node("option", null, a.name + " (" + a.presence + ")");
          option.value = a.id;
          select.appendChild(option);
        });
        break;
      case "canned":
        var canned = el("kefu-canned");
        canned.textContent = "";
        canned.appendChild(node("option", null, t.canned));
        frame.items.forEach(function (c) {
          var option = node("option", null, c.title);
          option.value = c.text;
          canned.appendChild(option);
        });
        break;
      case "error": el("kefu-error").textContent = frame.text || frame.code; break;
    }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/agent/");
    socket.onopen = function () {
      retry = 0;
      root.classList.remove("kefu-offline");
      send({type: "agents"});
      send({type: "canned"});
      send({type: "presence", status: el("kefu-presence").value});
    };
    socket.onmessage = function (event) { onFrame(JSON.parse(event.data)); };
    socket.onclose = function (event) {
      if (event.code === 4403) {  // access was withdrawn: reconnecting cannot help
        root.classList.remove("kefu-offline");
        el("kefu-notice").textContent = t.accessLost;
        el("kefu-notice").hidden = false;
        return;
      }
      root.classList.add("kefu-offline");
      var delay = Math.min(15000, 500 * Math.pow(2, retry++)) * Math.random();
      setTimeout(connect, delay);
    };
  }

  el("kefu-send").addEventListener("click", function () {
    var text = el("kefu-reply").value.trim();
    if (!text || !current) return;
    send({type: "reply", conversation_id: current.id, text: text, internal: el("kefu-internal").checked});
    el("kefu-reply").value = "";
  });
  el("kefu-reply").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); el("kefu-send").click(); return; }
    if (current && Date.now() - lastTyping > 2000) { lastTyping = Date.now(); send({type: "typing", conversation_id: current.id}); }
  });
  el("kefu-accept").addEventListener("click", function () { send({type: "accept", conversation_id: current.id}); });
  el("kefu-resolve").addEventListener("click", function () { send({type: "resolve", conversation_id: current.id}); });
  el("kefu-handback").addEventListener("click", function () { send({type: "handback", conversation_id: current.id}); });
  el("kefu-suggest").addEventListener("click", function () { if (current) send({type: "suggest", conversation_id: current.id}); });
  el("kefu-transfer").addEventListener("click", function () {
    send({type: "transfer", conversation_id: current.id, agent_id: parseInt(el("kefu-transfer-to").value, 10)});
  });
  el("kefu-canned").addEventListener("change", function (event) {
    if (event.target.value && event.target.selectedIndex > 0) el("kefu-reply").value = event.target.value;
  });
  el("kefu-presence").addEventListener("change", function (event) { send({type: "presence", status: event.target.value}); });
  setInterval(function () { send({type: "ping", status: el("kefu-presence").value}); }, 30000);
  connect();
})();
