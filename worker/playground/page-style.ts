/** The playground's stylesheet, served at /playground.css (the CSP allows styles from 'self' only). System fonts, light and dark. */
export const playgroundStyle = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fbfbfc; --panel: #f0f2f5; --line: #c9ced6; --accent: #0b5cad; --err: #b3261e; --muted: #5b6470; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8eb; --bg: #14171b; --panel: #1d2127; --line: #3a414b; --accent: #7cb4ff; --err: #ff8a80; --muted: #9aa3ad; }
}
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); display: flex; flex-direction: column; }
h1 { font-size: 1.1rem; margin: 0; }
.muted { color: var(--muted); font-weight: normal; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
button, input, textarea { font: inherit; color: inherit; }
input, textarea { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 0.35rem 0.5rem; width: 100%; }
textarea { resize: vertical; }
button { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 0.35rem 0.8rem; cursor: pointer; }
button[type=submit], #send { background: var(--accent); color: var(--bg); border-color: var(--accent); }
button:disabled { opacity: 0.5; cursor: default; }
button[aria-pressed=true] { border-color: var(--accent); box-shadow: inset 0 -2px 0 var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.top { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: center; padding: 0.6rem 1rem; border-bottom: 1px solid var(--line); }
.key-form { display: flex; flex-wrap: wrap; gap: 0.4rem; align-items: center; flex: 1; min-width: 16rem; }
.key-form input { width: auto; flex: 1; min-width: 10rem; max-width: 26rem; }
.layout { flex: 1; display: grid; grid-template-columns: minmax(14rem, 18rem) 1fr; min-height: 0; }
.settings { border-right: 1px solid var(--line); padding: 0.6rem 1rem; overflow: auto; background: var(--panel); }
.settings summary { font-weight: 600; cursor: pointer; margin-bottom: 0.4rem; }
.fields { display: grid; gap: 0.2rem; }
.fields label { margin-top: 0.35rem; font-size: 0.9rem; }
.fields .check { display: flex; gap: 0.4rem; align-items: baseline; }
.fields .check input { width: auto; }
.main { display: flex; flex-direction: column; min-width: 0; min-height: 0; padding: 0.6rem 1rem; gap: 0.6rem; }
.views { display: flex; flex-wrap: wrap; gap: 0.4rem; align-items: center; }
#chat-view, #code-view { display: flex; flex-direction: column; gap: 0.6rem; flex: 1; min-height: 0; }
[hidden] { display: none !important; }
.transcript { flex: 1; overflow: auto; min-height: 8rem; display: flex; flex-direction: column; gap: 0.6rem; }
.message { border: 1px solid var(--line); border-radius: 8px; padding: 0.5rem 0.75rem; max-width: 60rem; }
.message.user { background: var(--panel); align-self: flex-end; }
.message h2 { font-size: 0.8rem; margin: 0 0 0.2rem; color: var(--muted); text-transform: uppercase; letter-spacing: 0.04em; }
.message .content { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.message .usage { font-size: 0.85rem; color: var(--muted); margin: 0.4rem 0 0; }
.error { color: var(--err); border: 1px solid var(--err); border-radius: 6px; padding: 0.4rem 0.6rem; margin: 0; white-space: pre-wrap; }
.composer { display: grid; gap: 0.4rem; }
.actions { display: flex; flex-wrap: wrap; gap: 0.4rem; }
.code { flex: 1; overflow: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem; margin: 0; font: 13px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; white-space: pre; }
@media (max-width: 760px) {
  .layout { grid-template-columns: 1fr; grid-template-rows: auto 1fr; }
  .settings { border-right: 0; border-bottom: 1px solid var(--line); max-height: 45vh; }
  .message { max-width: 100%; }
}
`;
