// The console page (gateway/web/console.py): the public GraphQL API over HTTP, and its
// graphql-transport-ws subscription for everything live. Every value from the API is put on
// the page as text (textContent, attributes), never as markup.

// The GSM 03.38 alphabet, as gateway/domain/segments.py reads it (a unit test compares them).
const GSM7_BASIC = "\n\r !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz\u00a1\u00a3\u00a4\u00a5\u00a7\u00bf\u00c4\u00c5\u00c6\u00c7\u00c9\u00d1\u00d6\u00d8\u00dc\u00df\u00e0\u00e4\u00e5\u00e6\u00e8\u00e9\u00ec\u00f1\u00f2\u00f6\u00f8\u00f9\u00fc\u0393\u0394\u0398\u039b\u039e\u03a0\u03a3\u03a6\u03a8\u03a9";
const GSM7_EXTENSION = "\f[\\]^{|}~\u20ac";

/** Segments as the gateway counts them: GSM-7 (160, or 153 per part) unless a character is
 * outside the alphabet, then UCS-2 (70, or 67 per part); a character is never cut in two. */
export function countSegments(body) {
  const chars = Array.from(body); // code points, as Python iterates a str
  const ucs2 = chars.some((ch) => !GSM7_BASIC.includes(ch) && !GSM7_EXTENSION.includes(ch));
  const cost = ucs2 ? (ch) => ch.length : (ch) => (GSM7_EXTENSION.includes(ch) ? 2 : 1);
  const [single, multi] = ucs2 ? [70, 67] : [160, 153];
  const units = chars.reduce((sum, ch) => sum + cost(ch), 0);
  let segments = 0;
  if (units > single) {
    let used = 0;
    segments = 1;
    for (const ch of chars) {
      if (used + cost(ch) > multi) {
        segments += 1;
        used = 0;
      }
      used += cost(ch);
    }
  } else if (chars.length > 0) {
    segments = 1;
  }
  return { encoding: ucs2 ? "UCS2" : "GSM7", segments, units };
}

const $ = (id) => document.getElementById(id);
const settings = JSON.parse($("console-settings").textContent);
const endpoint = new URL("graphql", window.location.href).href;

// The key lives in this page only: never written to the browser's storage.
let apiKey = null;
let socket = null;
let lastCursor = null;
let openConversation = null;
let refreshTimer = null;
let arrivedInOpen = false;

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

async function graphql(query, variables = {}) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || answer.errors) {
    const reason = answer.errors ? answer.errors.map((e) => e.message).join("; ") : response.status;
    throw new Error(`${reason}`);
  }
  return answer.data;
}

function showError(error) {
  $("connection").textContent = `error: ${error.message}`;
}

// ------------------------------------------------------------------ conversations

const CONVERSATIONS = `query Conversations($search: String) {
  conversations(first: 50, search: $search) { edges { node {
    id participants unreadCount lastMessageAt matchingMessage { body } } } } }`;

async function loadConversations() {
  const search = $("search").value.trim() || null;
  const data = await graphql(CONVERSATIONS, { search });
  const items = data.conversations.edges.map(({ node }) => {
    const item = element(
      "li",
      { "data-id": node.id, class: node.id === openConversation ? "conversation open" : "conversation" },
      element("span", { class: "participants", text: node.participants.join(" \u2194 ") }),
    );
    if (node.unreadCount > 0) {
      item.append(element("span", { class: "badge", text: String(node.unreadCount) }));
    }
    if (node.matchingMessage && node.matchingMessage.body) {
      item.append(element("span", { class: "match", text: node.matchingMessage.body }));
    }
    item.addEventListener("click", () => open(node.id).catch(showError));
    return item;
  });
  $("conversations").replaceChildren(...items);
}

// ------------------------------------------------------------------ thread

const THREAD = `query Thread($id: ID!) { conversation(id: $id) { id participants
  messages(last: 50) { edges { node { id direction channel status body attachments metadata
    createdAt error { code description } } } } } }`;
const MARK_READ = `mutation Read($id: ID!) { markConversationRead(conversationId: $id) {
  __typename } }`;

const TICKS = { QUEUED: "\u25f7", SENDING: "\u25f7", SENT: "\u2713", DELIVERED: "\u2713\u2713",
  FAILED: "\u2717", UNDELIVERED: "\u2717", RECEIVED: "\u2193" };

function statusOf(message) {
  const parts = [TICKS[message.status] || "\u00b7", message.status];
  if (message.error) parts.push(`\u2014 ${message.error.description || message.error.code}`);
  return element("span", { class: "status", "data-status": message.status, text: parts.join(" ") });
}

function messageItem(message) {
  const item = element("li", { class: `message ${message.direction.toLowerCase()}`, "data-id": message.id });
  const subject = message.metadata && message.metadata.subject;
  if (subject) item.append(element("strong", { class: "subject", text: String(subject) }));
  item.append(element("p", { class: "body", text: message.body || "" }));
  for (const url of message.attachments) {
    item.append(element("span", { class: "attachment", text: url }));
  }
  item.append(
    element("span", { class: "meta", text: `${message.channel} \u00b7 ${message.createdAt}` }),
    statusOf(message),
  );
  return item;
}

async function loadThread() {
  if (!openConversation) return;
  const data = await graphql(THREAD, { id: openConversation });
  const conversation = data.conversation;
  if (!conversation) return;
  $("thread-title").textContent = conversation.participants.join(" \u2194 ");
  $("thread").replaceChildren(...conversation.messages.edges.map(({ node }) => messageItem(node)));
}

async function open(conversationId) {
  openConversation = conversationId;
  await loadThread();
  await graphql(MARK_READ, { id: conversationId });
  await loadConversations();
}

// ------------------------------------------------------------------ dead letters

const DEAD_LETTERS = `query DeadLetters { deadLetters(first: 20) { edges { node {
  id channel to body error { code description } } } } }`;
const RETRY = `mutation Retry($id: ID!) { retryMessage(id: $id) { __typename } }`;

async function loadDeadLetters() {
  const data = await graphql(DEAD_LETTERS);
  const items = data.deadLetters.edges.map(({ node }) => {
    const reason = node.error ? node.error.description || node.error.code : "";
    const retry = element("button", { type: "button", text: "Retry" });
    retry.addEventListener("click", async () => {
      retry.disabled = true;
      try {
        const answer = await graphql(RETRY, { id: node.id });
        retry.textContent = answer.retryMessage.__typename === "MessageAccepted" ? "Retried" : answer.retryMessage.__typename;
        await loadDeadLetters();
      } catch (error) {
        showError(error);
      }
    });
    return element(
      "li",
      { class: "dead-letter", "data-id": node.id },
      element("span", { class: "to", text: `${node.channel} to ${node.to}` }),
      element("span", { class: "body", text: node.body || "" }),
      element("span", { class: "reason", text: reason }),
      retry,
    );
  });
  $("dead-letters").replaceChildren(...items);
}

// ------------------------------------------------------------------ live events

function refreshSoon(event) {
  if (event.kind === "received" && event.conversationId === openConversation) arrivedInOpen = true;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(async () => {
    try {
      await loadConversations();
      await loadDeadLetters();
      await loadThread();
      // An open conversation is being read: what arrives in it is read at once.
      if (arrivedInOpen) {
        arrivedInOpen = false;
        await graphql(MARK_READ, { id: openConversation });
        await loadConversations();
      }
    } catch (error) {
      showError(error);
    }
  }, 150);
}

const EVENTS = `subscription Events($after: String) { messageEvents(after: $after) {
  cursor kind status messageId conversationId } }`;

// Read marks made elsewhere (another tab, another person on the account) come only here: they
// are no message event.
const INBOX = `subscription Inbox { inboxChanges { conversationId kind unreadCount } }`;

function showUnread(change) {
  const item = Array.from($("conversations").children).find(
    (node) => node.dataset.id === change.conversationId,
  );
  if (!item) {
    // A conversation not listed yet (or not matching the search): the list is read again.
    if (change.kind === "RECEIVED") refreshSoon({ kind: "received", conversationId: change.conversationId });
    return;
  }
  let badge = item.querySelector(".badge");
  if (change.unreadCount > 0) {
    if (!badge) {
      badge = element("span", { class: "badge" });
      item.querySelector(".participants").after(badge);
    }
    badge.textContent = String(change.unreadCount);
  } else if (badge) {
    badge.remove();
  }
}

function subscribeInbox(send) {
  send({ id: "inbox", type: "subscribe", payload: { query: INBOX } });
}

function subscribe() {
  if (socket) socket.close();
  const url = new URL(endpoint);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.href, "graphql-transport-ws");
  socket = ws;
  const send = (frame) => ws.send(JSON.stringify(frame));
  ws.addEventListener("open", () =>
    send({ type: "connection_init", payload: { authorization: `Bearer ${apiKey}` } }),
  );
  ws.addEventListener("message", ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.type === "connection_ack") {
      $("connection").textContent = "live";
      send({ id: "events", type: "subscribe", payload: { query: EVENTS, variables: { after: lastCursor } } });
      subscribeInbox(send);
    } else if (frame.type === "ping") {
      send({ type: "pong" });
    } else if (frame.type === "next" && frame.payload.data && frame.id === "inbox") {
      showUnread(frame.payload.data.inboxChanges);
    } else if (frame.type === "next" && frame.payload.data) {
      const event = frame.payload.data.messageEvents;
      lastCursor = event.cursor;
      refreshSoon(event);
    } else if (frame.type === "complete" && frame.id === "inbox") {
      // Cut off (it fell behind, or the live feed was interrupted): no change has a cursor to
      // resume from, so the badges are read again and the changes followed anew.
      setTimeout(() => {
        if (socket !== ws || ws.readyState !== WebSocket.OPEN) return;
        subscribeInbox(send);
        loadConversations().catch(showError);
      }, 1000);
    } else if (frame.type === "error") {
      $("connection").textContent = "subscription refused";
    }
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    $("connection").textContent = `disconnected (${event.code}), reconnecting`;
    // Resumes after the last event seen: the server replays what was missed.
    setTimeout(() => socket === ws && subscribe(), 2000);
  });
}

// ------------------------------------------------------------------ compose

const SEND = `mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {
  __typename
  ... on MessageAccepted { message { id conversation { id } } }
  ... on InvalidInput { problems { field problem } }
  ... on RecipientSuppressed { reason }
} }`;

function composeChanged() {
  const channel = $("channel").value;
  $("subject").hidden = channel !== "EMAIL";
  $("media").hidden = channel !== "MMS";
  const preview = $("segments");
  if (channel === "EMAIL") {
    preview.textContent = "";
    preview.removeAttribute("data-encoding");
    preview.removeAttribute("data-segments");
    return;
  }
  const { encoding, segments, units } = countSegments($("body").value);
  const perPart = segments > 1 ? (encoding === "GSM7" ? 153 : 67) : encoding === "GSM7" ? 160 : 70;
  preview.dataset.encoding = encoding;
  preview.dataset.segments = String(segments);
  preview.textContent = `${encoding === "GSM7" ? "GSM-7" : "UCS-2"} \u00b7 ${segments} segment${segments === 1 ? "" : "s"} \u00b7 ${units} units (${perPart} per segment)`;
}

async function sendComposed(submit) {
  submit.preventDefault();
  const channel = $("channel").value;
  const input = { channel, from: $("from").value, to: $("to").value, body: $("body").value };
  if (channel === "MMS" && $("media").value) input.attachments = [$("media").value];
  if (channel === "EMAIL" && $("subject").value) input.metadata = { subject: $("subject").value };
  const result = $("compose-result");
  try {
    const answer = (await graphql(SEND, { input })).sendMessage;
    if (answer.__typename === "MessageAccepted") {
      result.textContent = `Accepted ${answer.message.id}`;
      $("body").value = "";
      composeChanged();
      await open(answer.message.conversation.id);
    } else if (answer.problems) {
      result.textContent = answer.problems.map((p) => `${p.field}: ${p.problem}`).join("; ");
    } else {
      result.textContent = answer.reason ? `${answer.__typename}: ${answer.reason}` : answer.__typename;
    }
  } catch (error) {
    result.textContent = `error: ${error.message}`;
  }
}

// ------------------------------------------------------------------ start

async function connect(submit) {
  if (submit) submit.preventDefault();
  apiKey = $("api-key").value.trim();
  if (!apiKey) return;
  try {
    await loadConversations();
    await loadDeadLetters();
    subscribe();
  } catch (error) {
    showError(error);
  }
}

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => apiKey && loadConversations().catch(showError), 200);
});
$("key-form").addEventListener("submit", connect);
$("compose").addEventListener("submit", sendComposed);
for (const id of ["channel", "body"]) $(id).addEventListener("input", composeChanged);
composeChanged();
if (settings.apiKey) {
  $("api-key").value = settings.apiKey;
  connect();
}
