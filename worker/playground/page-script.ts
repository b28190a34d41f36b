/**
 * The playground's browser script, served at /playground.js (the CSP allows scripts from 'self' only).
 * Plain ES2020 in a string: the Worker ships it as is, no build step. It calls the API on the page's own
 * origin with the key from localStorage (never in a URL), streams with fetch + a small SSE reader so the
 * Stop button can abort (the Worker then cancels the node's work), and shows the API's own error message.
 * (No template literals in here: the whole script is one.)
 */
export const playgroundScript = String.raw`"use strict";
(function () {
  var KEY_STORAGE = "phi4-playground.api-key";
  var API_BASE = location.origin + "/v1";
  var MODEL = document.body.dataset.model;
  var NUMBER_PARAMS = ["temperature", "top_p", "top_k", "max_tokens", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty"];
  var INTEGER_PARAMS = { top_k: true, max_tokens: true, seed: true };
  // What the OpenAI Python SDK takes as keyword arguments; the rest go through extra_body.
  var PYTHON_KWARGS = { model: 1, messages: 1, stream: 1, stream_options: 1, temperature: 1, top_p: 1, max_tokens: 1, seed: 1, stop: 1, presence_penalty: 1, frequency_penalty: 1, response_format: 1 };

  function $(id) { return document.getElementById(id); }
  var keyInput = $("api-key"), keyState = $("key-state"), transcript = $("transcript"), errorBox = $("error");
  var messageBox = $("message"), sendButton = $("send"), stopButton = $("stop-button");
  var codeSample = $("code-sample");
  var history = [];
  var controller = null;
  var language = "curl";

  // --- the key: typed once, kept in this browser's localStorage ---
  function storedKey() { try { return localStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; } }
  function showKeyState() { keyState.textContent = storedKey() ? "Key saved in this browser." : "No key saved."; }
  keyInput.value = storedKey();
  showKeyState();
  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var key = keyInput.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    showKeyState();
    messageBox.focus();
  });
  $("forget-key").addEventListener("click", function () {
    localStorage.removeItem(KEY_STORAGE);
    keyInput.value = "";
    showKeyState();
  });

  // --- the request ---
  function params() {
    var out = {};
    NUMBER_PARAMS.forEach(function (name) {
      var raw = $(name).value.trim();
      if (raw === "") return;
      out[name] = INTEGER_PARAMS[name] ? parseInt(raw, 10) : Number(raw);
    });
    var stops = $("stop").value.split("\n").filter(function (s) { return s !== ""; });
    if (stops.length) out.stop = stops;
    if ($("json-mode").checked) out.response_format = { type: "json_object" };
    return out;
  }

  function conversation(userText) {
    var messages = [];
    var system = $("system-prompt").value.trim();
    if (system) messages.push({ role: "system", content: system });
    return messages.concat(history, [{ role: "user", content: userText }]);
  }

  function requestBody(userText) {
    var body = { model: MODEL, messages: conversation(userText) };
    var p = params();
    Object.keys(p).forEach(function (k) { body[k] = p[k]; });
    body.stream = true;
    body.stream_options = { include_usage: true };
    return body;
  }

  // --- the transcript ---
  function addMessage(role, text) {
    var article = document.createElement("article");
    article.className = "message " + role;
    var heading = document.createElement("h2");
    heading.textContent = role === "user" ? "You" : MODEL;
    var content = document.createElement("p");
    content.className = "content";
    content.textContent = text;
    article.append(heading, content);
    transcript.append(article);
    transcript.scrollTop = transcript.scrollHeight;
    return article;
  }

  function setUsage(article, text) {
    var line = document.createElement("p");
    line.className = "usage";
    line.textContent = text;
    article.append(line);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }
  function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }

  function formatCost(dollars) {
    return "$" + dollars.toFixed(10).replace(/0+$/, "").replace(/\.$/, "");
  }

  function usageLine(usage, ttftMs, tokensPerSecond, finishReason) {
    var parts = [
      usage.prompt_tokens + " tokens in",
      usage.completion_tokens + " out",
      "estimated_cost " + formatCost(usage.estimated_cost || 0),
      "first token " + Math.round(ttftMs) + " ms",
      (tokensPerSecond === null ? "–" : tokensPerSecond.toFixed(1)) + " tokens/s",
    ];
    if (finishReason) parts.push("finish: " + finishReason);
    return parts.join(" · ");
  }

  /** The API's message from an error response (OpenAI's shape), or the status line when it has none. */
  function errorMessage(response, text) {
    try {
      var body = JSON.parse(text);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON: fall through */ }
    return "HTTP " + response.status + " " + response.statusText;
  }

  function setStreaming(on) {
    sendButton.disabled = on;
    stopButton.disabled = !on;
  }

  // --- sending, streaming, stopping ---
  async function send(text) {
    clearError();
    // Whatever is in the key box is the key: typed and not yet saved, it is saved now.
    var key = keyInput.value.trim();
    if (key && key !== storedKey()) { localStorage.setItem(KEY_STORAGE, key); showKeyState(); }
    if (!key) {
      showError("Type your API key above first.");
      keyInput.focus();
      return;
    }
    var body = requestBody(text);
    var userArticle = addMessage("user", text);
    var answer = addMessage("assistant", "");
    var content = answer.querySelector(".content");
    answer.setAttribute("aria-busy", "true");
    messageBox.value = "";
    controller = new AbortController();
    setStreaming(true);
    var started = performance.now();
    var firstTokenAt = null;
    var usage = null, finishReason = null, received = "";
    try {
      var response = await fetch(API_BASE + "/chat/completions", {
        method: "POST",
        headers: { Authorization: "Bearer " + key, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(errorMessage(response, await response.text()));
      var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      var buffer = "";
      reading: for (;;) {
        var next = await reader.read();
        if (next.done) break;
        buffer += next.value.replace(/\r\n?/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          var event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          var data = event.split("\n").filter(function (l) { return l.indexOf("data:") === 0; })
            .map(function (l) { return l.slice(5).replace(/^ /, ""); }).join("\n");
          if (data === "") continue; // a keep-alive comment or an id-only event
          if (data === "[DONE]") break reading;
          var chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          var choice = chunk.choices && chunk.choices[0];
          if (!choice) continue;
          if (choice.finish_reason) finishReason = choice.finish_reason;
          var piece = choice.delta && choice.delta.content;
          if (piece) {
            if (firstTokenAt === null) firstTokenAt = performance.now();
            received += piece;
            content.textContent = received;
            transcript.scrollTop = transcript.scrollHeight;
          }
        }
      }
      var finished = performance.now();
      history.push({ role: "user", content: text }, { role: "assistant", content: received });
      if (usage) {
        var generating = firstTokenAt === null ? 0 : (finished - firstTokenAt) / 1000;
        var rate = usage.completion_tokens > 1 && generating > 0 ? (usage.completion_tokens - 1) / generating : null;
        setUsage(answer, usageLine(usage, (firstTokenAt === null ? finished : firstTokenAt) - started, rate, finishReason));
      }
    } catch (err) {
      if (err && err.name === "AbortError") {
        // What was shown stays in the conversation, so the next turn continues from it (unless it was cleared).
        if (answer.isConnected) history.push({ role: "user", content: text }, { role: "assistant", content: received });
        setUsage(answer, "Stopped after " + received.length + " characters" +
          (firstTokenAt === null ? "" : " · first token " + Math.round(firstTokenAt - started) + " ms"));
      } else {
        // Nothing was answered: take the turn back so it can be fixed and sent again.
        userArticle.remove();
        answer.remove();
        if (!messageBox.value) messageBox.value = text;
        showError(err instanceof TypeError ? "Could not reach the API: " + err.message : err.message);
      }
    } finally {
      answer.removeAttribute("aria-busy");
      controller = null;
      setStreaming(false);
      renderCode();
    }
  }

  function stop() { if (controller) controller.abort(); }

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = messageBox.value.trim();
    if (text && !controller) send(text);
  });
  messageBox.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && controller) { event.preventDefault(); stop(); }
  });
  stopButton.addEventListener("click", stop);
  $("clear").addEventListener("click", function () {
    stop();
    history = [];
    transcript.textContent = "";
    clearError();
    renderCode();
    messageBox.focus();
  });
  $("settings-form").addEventListener("submit", function (event) { event.preventDefault(); });

  // --- the code view: the same request as curl, Python and JavaScript (OpenAI SDKs) ---
  function python(value, indent) {
    var json = JSON.stringify(value, null, 4).replace(/("(?:[^"\\]|\\.)*")|\b(true|false|null)\b/g, function (m, str, word) {
      if (str) return str;
      return word === "true" ? "True" : word === "false" ? "False" : "None";
    });
    return json.split("\n").join("\n" + indent);
  }

  function snippet(body, lang) {
    if (lang === "curl") {
      return "curl " + API_BASE + "/chat/completions \\\n" +
        "  -H \"Authorization: Bearer $PHI4_API_KEY\" \\\n" +
        "  -H \"Content-Type: application/json\" \\\n" +
        "  --no-buffer \\\n" +
        "  -d '" + JSON.stringify(body, null, 2).replace(/'/g, "'\\''") + "'\n";
    }
    if (lang === "python") {
      var kwargs = [], extra = {};
      Object.keys(body).forEach(function (k) {
        if (PYTHON_KWARGS[k]) kwargs.push("    " + k + "=" + python(body[k], "    ") + ",");
        else extra[k] = body[k];
      });
      if (Object.keys(extra).length) kwargs.push("    extra_body=" + python(extra, "    ") + ",");
      return "import os\nfrom openai import OpenAI\n\n" +
        "client = OpenAI(base_url=\"" + API_BASE + "\", api_key=os.environ[\"PHI4_API_KEY\"])\n\n" +
        "stream = client.chat.completions.create(\n" + kwargs.join("\n") + "\n)\n" +
        "for chunk in stream:\n" +
        "    if chunk.choices and chunk.choices[0].delta.content:\n" +
        "        print(chunk.choices[0].delta.content, end=\"\", flush=True)\n" +
        "    if chunk.usage:\n" +
        "        print(\"\\n\", chunk.usage)\n";
    }
    return "import OpenAI from \"openai\";\n\n" +
      "const client = new OpenAI({ baseURL: \"" + API_BASE + "\", apiKey: process.env.PHI4_API_KEY });\n\n" +
      "const stream = await client.chat.completions.create(" + JSON.stringify(body, null, 2) + ");\n" +
      "for await (const chunk of stream) {\n" +
      "  process.stdout.write(chunk.choices[0]?.delta?.content ?? \"\");\n" +
      "  if (chunk.usage) console.log(\"\\n\", chunk.usage);\n" +
      "}\n";
  }

  function renderCode() {
    if ($("code-view").hidden) return;
    codeSample.textContent = snippet(requestBody(messageBox.value.trim() || "Hello!"), language);
  }

  function showView(code) {
    $("chat-view").hidden = code;
    $("code-view").hidden = !code;
    $("show-chat").setAttribute("aria-pressed", String(!code));
    $("show-code").setAttribute("aria-pressed", String(code));
    renderCode();
  }
  $("show-chat").addEventListener("click", function () { showView(false); });
  $("show-code").addEventListener("click", function () { showView(true); });
  Array.prototype.forEach.call(document.querySelectorAll(".lang"), function (button) {
    button.addEventListener("click", function () {
      language = button.dataset.lang;
      Array.prototype.forEach.call(document.querySelectorAll(".lang"), function (b) {
        b.setAttribute("aria-pressed", String(b === button));
      });
      renderCode();
    });
  });
  document.addEventListener("input", renderCode);
  document.addEventListener("change", renderCode);
  $("copy-code").addEventListener("click", function () {
    navigator.clipboard.writeText(codeSample.textContent).then(
      function () { $("copy-state").textContent = "Copied."; },
      function () { $("copy-state").textContent = "Copy failed: select the code and copy it."; });
  });

  // Narrow screens start with the settings folded so the chat is in view.
  if (window.matchMedia("(max-width: 760px)").matches) $("settings").open = false;
  (storedKey() ? messageBox : keyInput).focus();
})();
`;
