/**
 * The playground's HTML. Its script and style are separate routes (page-script.ts, page-style.ts) so the
 * Content-Security-Policy can allow only 'self'; input ranges come from shared/limits.ts, so the form
 * and the API never disagree.
 */
import {
  MAX_OUTPUT_TOKENS, MAX_STOP_SEQUENCES, PENALTY, REPETITION_PENALTY, TEMPERATURE, TOP_K, TOP_P,
} from "../../shared/limits.ts";

export const SCRIPT_PATH = "/playground.js";
export const STYLE_PATH = "/playground.css";

/** A model id is configuration, not user input, but it lands in an attribute: escape it anyway. */
function attribute(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function numberField(id: string, label: string, attrs: { min?: number; max?: number; step: string; placeholder: string; value?: string }): string {
  const min = attrs.min === undefined ? "" : ` min="${attrs.min}"`;
  const max = attrs.max === undefined ? "" : ` max="${attrs.max}"`;
  const value = attrs.value === undefined ? "" : ` value="${attrs.value}"`;
  return `<label for="${id}">${label}</label>` +
    `<input id="${id}" name="${id}" type="number" inputmode="decimal" step="${attrs.step}"${min}${max}${value} placeholder="${attrs.placeholder}">`;
}

export function playgroundPage(modelId: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${attribute(modelId)} playground</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${STYLE_PATH}">
<script src="${SCRIPT_PATH}" defer></script>
</head>
<body data-model="${attribute(modelId)}">
<header class="top">
  <h1>${attribute(modelId)} <span class="muted">playground</span></h1>
  <form id="key-form" class="key-form" autocomplete="off">
    <label for="api-key">API key</label>
    <input id="api-key" type="password" spellcheck="false" placeholder="sk-…" aria-describedby="key-state">
    <button type="submit">Save key</button>
    <button type="button" id="forget-key">Forget</button>
    <span id="key-state" class="muted" role="status"></span>
  </form>
</header>
<div class="layout">
  <details id="settings" class="settings" open>
    <summary>Settings</summary>
    <form id="settings-form" class="fields">
      <label for="system-prompt">System prompt</label>
      <textarea id="system-prompt" rows="3" placeholder="You are a helpful assistant."></textarea>
      ${numberField("temperature", "Temperature", { min: TEMPERATURE.min, max: TEMPERATURE.max, step: "0.05", placeholder: String(TEMPERATURE.default), value: "0.7" })}
      ${numberField("top_p", "Top p", { min: 0, max: TOP_P.max, step: "0.01", placeholder: String(TOP_P.default) })}
      ${numberField("top_k", "Top k", { min: TOP_K.min, max: TOP_K.max, step: "1", placeholder: `${TOP_K.default} (off)` })}
      ${numberField("max_tokens", "Max tokens", { min: 1, max: MAX_OUTPUT_TOKENS, step: "1", placeholder: "until the end", value: "256" })}
      ${numberField("seed", "Seed", { min: 0, step: "1", placeholder: "random" })}
      ${numberField("presence_penalty", "Presence penalty", { min: PENALTY.min, max: PENALTY.max, step: "0.1", placeholder: String(PENALTY.default) })}
      ${numberField("frequency_penalty", "Frequency penalty", { min: PENALTY.min, max: PENALTY.max, step: "0.1", placeholder: String(PENALTY.default) })}
      ${numberField("repetition_penalty", "Repetition penalty", { min: REPETITION_PENALTY.min, max: REPETITION_PENALTY.max, step: "0.05", placeholder: String(REPETITION_PENALTY.default) })}
      <label for="stop">Stop sequences <span class="muted">(one a line, up to ${MAX_STOP_SEQUENCES})</span></label>
      <textarea id="stop" rows="2"></textarea>
      <label class="check"><input id="json-mode" type="checkbox"> JSON mode <span class="muted">(response_format json_object)</span></label>
    </form>
  </details>
  <main class="main">
    <div class="views" role="group" aria-label="View">
      <button type="button" id="show-chat" aria-pressed="true">Chat</button>
      <button type="button" id="show-code" aria-pressed="false">Code</button>
    </div>
    <section id="chat-view" aria-label="Chat">
      <div id="transcript" class="transcript" role="log" aria-live="polite"></div>
      <p id="error" class="error" role="alert" hidden></p>
      <form id="composer" class="composer">
        <label for="message" class="visually-hidden">Message</label>
        <textarea id="message" rows="3" placeholder="Message (Enter sends, Shift+Enter adds a line, Esc stops)"></textarea>
        <div class="actions">
          <button type="submit" id="send">Send</button>
          <button type="button" id="stop-button" disabled>Stop</button>
          <button type="button" id="clear">Clear chat</button>
        </div>
      </form>
    </section>
    <section id="code-view" aria-label="Code" hidden>
      <div class="views" role="group" aria-label="Language">
        <button type="button" class="lang" data-lang="curl" aria-pressed="true">curl</button>
        <button type="button" class="lang" data-lang="python" aria-pressed="false">Python</button>
        <button type="button" class="lang" data-lang="javascript" aria-pressed="false">JavaScript</button>
        <button type="button" id="copy-code">Copy</button>
        <span id="copy-state" class="muted" role="status"></span>
      </div>
      <p class="muted">The request the Send button makes (the message box, or "Hello!" when it is empty), with the key read from <code>PHI4_API_KEY</code>.</p>
      <pre class="code" tabindex="0" aria-label="Code sample"><code id="code-sample"></code></pre>
    </section>
  </main>
</div>
</body>
</html>
`;
}
