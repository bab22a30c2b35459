"""Interactive API docs that need no network: one self-contained page (no CDN script) that reads
`/openapi.json`, lists every operation with its parameters, and sends a request with the key typed in."""

HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cronlake lake API</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
.op{border:1px solid #ccc;border-radius:6px;margin:.6rem 0;padding:.4rem .8rem}
.op summary{cursor:pointer}.method{font-weight:bold;color:#fff;background:#2a7ae2;padding:0 .4rem;border-radius:3px}
label{display:inline-block;min-width:10rem}input{margin:.15rem 0;width:22rem}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}.desc{color:#555}
</style></head>
<body>
<h1 id="title">cronlake lake API</h1>
<p class="desc" id="description"></p>
<p><label for="api-key">API key</label><input id="api-key" type="password" placeholder="keyid.secret"></p>
<div id="operations">Loading /openapi.json…</div>
<script>
"use strict";
function element(tag, attributes, text) {
  const node = document.createElement(tag);
  Object.entries(attributes || {}).forEach(([name, value]) => node.setAttribute(name, value));
  if (text !== undefined) node.textContent = text;
  return node;
}
function operationBox(path, method, operation, index) {
  const box = element("details", {class: "op", id: "op-" + index});
  const summary = element("summary");
  summary.append(element("span", {class: "method"}, method.toUpperCase()), " ",
                 element("code", {}, path), " — " + (operation.summary || ""));
  box.append(summary);
  const form = element("form");
  (operation.parameters || []).forEach(parameter => {
    const id = "p-" + index + "-" + parameter.name;
    const row = element("div");
    row.append(element("label", {for: id}, parameter.name + (parameter.required ? " *" : "") +
                                            " (" + parameter.in + ")"),
               element("input", {id: id, name: parameter.name, "data-in": parameter.in,
                                 placeholder: (parameter.description || "")}));
    form.append(row);
  });
  const send = element("button", {type: "submit"}, "Send");
  const output = element("pre", {class: "response"});
  form.append(send);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    form.querySelectorAll("input").forEach(input => {
      if (!input.value) return;
      if (input.dataset.in === "path") url = url.replace("{" + input.name + "}", encodeURIComponent(input.value));
      else query.append(input.name, input.value);
    });
    const key = document.getElementById("api-key").value;
    const response = await fetch(url + (query.toString() ? "?" + query : ""),
                                 {headers: key ? {Authorization: "Bearer " + key} : {}});
    const text = await response.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (error) { /* not JSON */ }
    output.textContent = response.status + " " + response.statusText + "\\n" + shown;
  });
  box.append(form, output);
  return box;
}
fetch("openapi.json").then(response => response.json()).then(schema => {
  document.getElementById("title").textContent = schema.info.title + " " + schema.info.version +
                                                 " (OpenAPI " + schema.openapi + ")";
  document.getElementById("description").textContent = schema.info.description || "";
  const list = document.getElementById("operations");
  list.textContent = "";
  let index = 0;
  Object.entries(schema.paths).forEach(([path, methods]) =>
    Object.entries(methods).forEach(([method, operation]) => list.append(operationBox(path, method, operation,
                                                                                      index++))));
}).catch(error => { document.getElementById("operations").textContent = "Could not load the schema: " + error; });
</script>
</body></html>
"""
