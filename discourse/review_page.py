"""The keyboard-driven review page: a small HTTP server on 127.0.0.1 for one review queue.

Decisions go straight into the reviewed-codes store (``discourse.audit.apply_review``).
"""

from __future__ import annotations

from pathlib import Path

from .errors import DiscourseError

REVIEW_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>discourse review</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f6f3;color:#222}
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem}
.meta{color:#666;font-size:.9rem}.ctx{color:#777;white-space:pre-wrap;margin:.4rem 0}
.text{background:#fff;border-left:4px solid #1f5f8b;padding:.6rem .9rem;white-space:pre-wrap;font-size:1.1rem}
.codes{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0}
.code{border:2px solid #bbb;border-radius:6px;padding:.35rem .7rem;background:#fff;cursor:pointer}
.code.on{border-color:#1f5f8b;background:#dbe9f4}.code .k{font-weight:bold;margin-right:.3rem}
.code .m{font-size:.8rem;color:#a05a00;margin-left:.3rem}
textarea{width:100%;height:3.5rem}.status{margin:.5rem 0;min-height:1.5rem}.err{color:#b00020}
.saved{color:#2e7d32}kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3rem;background:#fff;font-size:.85rem}
details{margin-top:1.5rem;font-size:.9rem}
</style></head><body><main>
<div class="meta" id="meta"></div>
<div class="ctx" id="before"></div><div class="text" id="text"></div><div class="ctx" id="after"></div>
<div class="codes" id="codes"></div>
<textarea id="notes" placeholder="notes (press n to type, Esc to leave)"></textarea>
<div class="status" id="status"></div>
<p class="meta"><kbd>1</kbd>-<kbd>9</kbd> toggle a code &middot; <kbd>a</kbd> take the model's codes &middot;
<kbd>0</kbd> no code &middot; <kbd>Enter</kbd> save and next &middot; <kbd>&larr;</kbd>/<kbd>&rarr;</kbd> previous/next
without saving &middot; <kbd>n</kbd> notes. Codes marked <span style="color:#a05a00">model</span> are the model's.</p>
<details><summary>Codebook</summary><div id="book"></div></details>
</main><script>
const TOKEN="__TOKEN__";let Q=null,i=0,on=new Set();
const $=id=>document.getElementById(id);
function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;if(text!=null)e.textContent=text;return e}
function show(){const r=Q.rows[i],d=Q.decided[r.excerpt_id];
 on=new Set(d?d.codes:[]);$("notes").value=d?d.notes:"";
 $("meta").textContent=`${r.review_id}  (${i+1} of ${Q.rows.length}, ${Object.keys(Q.decided).length} reviewed)  ·  ${r.doc_id}  ·  ${r.role}  ·  ${r.speaker}`+(d?"  ·  reviewed":"");
 $("before").textContent=r.context_before;$("text").textContent=r.text;$("after").textContent=r.context_after;draw()}
function draw(){const r=Q.rows[i],box=$("codes");box.replaceChildren();
 Q.codes.forEach((c,k)=>{const b=el("div","code"+(on.has(c.id)?" on":""));b.title=c.definition;
  b.append(el("span","k",String(k+1)),el("span",null,c.label||c.id));
  if(r.model_codes.includes(c.id))b.append(el("span","m","model "+(r.p[c.id]??"")));
  b.onclick=()=>toggle(c.id);box.append(b)})}
function toggle(id){on.has(id)?on.delete(id):on.add(id);draw()}
function status(t,cls){const s=$("status");s.textContent=t;s.className="status "+(cls||"")}
async function save(){const r=Q.rows[i],body={excerpt_id:r.excerpt_id,codes:[...on],notes:$("notes").value};
 try{const res=await fetch("/api/decision",{method:"POST",headers:{"Content-Type":"application/json","X-Review-Token":TOKEN},body:JSON.stringify(body)});
  const j=await res.json();if(!res.ok)throw new Error(j.error||res.status);
  Q.decided[r.excerpt_id]={codes:[...on],notes:body.notes};status(`saved ${r.review_id}: ${[...on].join(", ")||"no code"}`,"saved");
  if(i<Q.rows.length-1)i++;show()}catch(e){status("not saved: "+e.message,"err")}}
document.addEventListener("keydown",e=>{if(!Q)return;const inNotes=document.activeElement===$("notes");
 if(inNotes){if(e.key==="Escape")$("notes").blur();if(e.key==="Enter"&&!e.shiftKey){e.preventDefault();$("notes").blur();save()}return}
 const n=parseInt(e.key,10);
 if(n>=1&&n<=Q.codes.length)toggle(Q.codes[n-1].id);
 else if(e.key==="0"){on.clear();draw();save()}
 else if(e.key==="a"){on=new Set(Q.rows[i].model_codes);draw()}
 else if(e.key==="Enter")save();
 else if(e.key==="ArrowRight"&&i<Q.rows.length-1){i++;show()}
 else if(e.key==="ArrowLeft"&&i>0){i--;show()}
 else if(e.key==="n"){e.preventDefault();$("notes").focus()}});
fetch("/api/queue").then(r=>r.json()).then(q=>{if(q.error){status("cannot load the queue: "+q.error,"err");return}Q=q;
 q.codes.forEach(c=>{$("book").append(el("h4",null,`${c.id}: ${c.label}`),el("p",null,c.definition))});
 const first=q.rows.findIndex(r=>!q.decided[r.excerpt_id]);i=first<0?0:first;
 if(!q.rows.length){status("the queue is empty","err");return}show()});
</script></body></html>
"""


def make_review_server(queue_path, codes, codebook, store_path, info, reviewer, host="127.0.0.1", port=0,
                       model_dir=None, backend=None, note=None):
    """An HTTP server (not yet started) for the keyboard-driven review page of one queue.

    GET / serves the page, GET /api/queue the queue and this reviewer's stored
    decisions (the reviewer matched however the name is typed); POST
    /api/decision stores one decision with ``apply_review``. Only requests
    addressed to this host and carrying the page's token are answered, so
    other web pages cannot post decisions. A queue without the model's
    fingerprint is checked against ``model_dir`` (``verify_queue_model``; ``note``
    is told when that happens, as it takes a while).
    """
    import http.server
    import json
    import math
    import secrets

    from .review_file import load_queue, read_review, reviewer_key, verify_queue_model
    from .review_store import apply_review, read_store

    codes = list(codes)
    token = secrets.token_hex(16)
    queue = load_queue(queue_path, codes)
    shown = queue[(queue["excerpt_id"] != "") & (queue["text"] != "")]
    verify_queue_model(shown, queue.attrs.get("about", {}), info, model_dir, queue_path, backend, note=note)
    entries = {c["id"]: c for c in (codebook or {}).get("codes", []) if isinstance(c, dict) and "id" in c}
    book = [{"id": c, "label": entries.get(c, {}).get("label", c), "definition": entries.get(c, {}).get("definition", "")}
            for c in codes]

    def prob(v):
        try:
            f = float(v)
        except ValueError:
            return None
        return None if math.isnan(f) else round(f, 2)

    rows = [{"excerpt_id": r["excerpt_id"], "review_id": r["review_id"], "doc_id": r["doc_id"], "role": r["role"],
             "speaker": r["speaker"], "context_before": r["context_before"], "text": r["text"],
             "context_after": r["context_after"],
             "model_codes": [m.strip() for m in r["model_codes"].split(";") if m.strip()],
             "p": {c: prob(r.get(f"p_{c}", "")) for c in codes}} for _, r in queue.iterrows() if r["excerpt_id"]]

    def decided() -> dict:
        if not Path(store_path).exists():
            return {}
        s = read_store(store_path)
        mine = s["reviewer"].map(reviewer_key) == reviewer_key(reviewer)
        s = s[mine & s["excerpt_id"].isin({r["excerpt_id"] for r in rows})]
        return {e: {"codes": [c for c in cs.split(";") if c], "notes": n}
                for e, cs, n in zip(s["excerpt_id"], s["codes"], s["notes"])}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: the terminal shows only what matters
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

        def _host_ok(self) -> bool:
            port = self.server.server_address[1]
            return self.headers.get("Host") in (f"127.0.0.1:{port}", f"localhost:{port}")

        def do_GET(self):  # noqa: N802 - http.server's naming
            if not self._host_ok():
                return self._json(403, {"error": "wrong host"})
            if self.path == "/":
                return self._send(200, REVIEW_PAGE.replace("__TOKEN__", token).encode("utf-8"), "text/html; charset=utf-8")
            if self.path == "/api/queue":
                try:
                    done = decided()
                except DiscourseError as exc:  # the store unreadable or kept busy by another writer
                    return self._json(503, {"error": exc.line()})
                return self._json(200, {"codes": book, "rows": rows, "decided": done, "reviewer": reviewer})
            return self._json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if not self._host_ok() or self.headers.get("X-Review-Token") != token:
                return self._json(403, {"error": "not allowed"})
            if self.path != "/api/decision":
                return self._json(404, {"error": "not found"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= 1_000_000:
                    raise ValueError("bad length")
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                eid, chosen, notes = body["excerpt_id"], body["codes"], body.get("notes", "")
                if not (isinstance(eid, str) and isinstance(chosen, list) and isinstance(notes, str)
                        and all(c in codes for c in chosen)):
                    raise ValueError("bad decision")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                return self._json(400, {"error": "a decision is {excerpt_id, codes: [known codes], notes}"})
            try:
                reviewed = read_review(queue_path, codes, reviewer=reviewer, decisions={eid: (chosen, notes)})
                summary = apply_review(reviewed, store_path, info, codes=codes)
            except DiscourseError as exc:
                return self._json(400, {"error": exc.line()})
            return self._json(200, {"ok": True, "store_rows": summary["store_rows"]})

    server = http.server.HTTPServer((host, port), Handler)
    server.token = token
    return server
