/* Comments widget: vanilla JavaScript, no build step, no cookies, no third-party requests.
   Snippet: <div id="comments"></div><script src="https://HOST/embed.js" data-site="KEY" async></script> */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector('script[src*="/embed.js"][data-site]');
  if (!script || !script.dataset.site) return;

  var API = new URL(script.src, location.href).origin;
  var CSS_VERSION = "__EMBED_CSS_VERSION__";
  var opt = script.dataset;
  var SITE = opt.site;
  var OWN_KEY = "moderation-comments:own";
  var ME_KEY = "moderation-comments:me";

  // -- strings: one table per language -----------------------------------------------------

  var STRINGS = {
    en: {
      title: "Comments",
      count: function (n) { return n === 1 ? "1 comment" : n + " comments"; },
      none: "No comments yet. Start the conversation.",
      sort: "Sort", oldest: "Oldest first", newest: "Newest first",
      write: "Leave a comment", replyTo: function (n) { return "Reply to " + n; },
      name: "Name", email: "Email", emailHint: "optional, private",
      website: "Website", optional: "optional",
      text: "Comment", hint: "Markdown: **bold**, *italic*, `code`, > quote, - list, [link](https://…)",
      preview: "Preview", post: "Post comment", posting: "Posting…", save: "Save", saving: "Saving…",
      reply: "Reply", cancel: "Cancel", edit: "Edit", del: "Delete", report: "Report",
      confirmDelete: "Delete this comment?", yesDelete: "Yes, delete", keep: "Keep it",
      reason: "Reason", reasons: { spam: "Spam", abuse: "Abuse or harassment", "off-topic": "Off topic", other: "Other" },
      note: "Note", sendReport: "Send report",
      reported: "Thank you. A moderator will look at it.",
      anonymous: "Anonymous", pending: "Awaiting moderation",
      pendingNote: "Only you can see this comment until a moderator approves it.",
      published: "Your comment is published.",
      held: "Thank you! Your comment is awaiting moderation; only you can see it for now.",
      rejected: "Your comment was not accepted.",
      editRejected: "Your edit was not accepted, so this comment is now hidden from other readers. " +
        "Moderators can still see it and may restore it.",
      updated: "Your comment is updated.", updatedHeld: "Your edit is awaiting moderation.",
      deleted: "Your comment is deleted.", removed: "This comment was removed.",
      tooMany: function (s) { return "Too many comments: try again in " + s + " s."; },
      tooManyOther: function (s) { return "Too many requests: try again in " + s + " s."; },
      network: "Could not reach the comment server. Check your connection and try again.",
      failed: "Something went wrong. Please try again.",
      windowClosed: "The time for changing this comment is over.",
      textShort: "Please write a comment (at least 2 characters).",
      loadMore: "Load more comments", loading: "Loading comments…",
      loadFailed: "Comments could not be loaded.", moreFailed: "Could not load more comments.",
      retry: "Retry", close: "Close",
      inReplyTo: "in reply to", removedOne: "a removed comment", edited: "edited", justNow: "just now",
      honeypot: "Leave this field empty", sep: ": "
    },
    "zh-CN": {
      title: "评论",
      count: function (n) { return n + " 条评论"; },
      none: "还没有评论，来说两句吧。",
      sort: "排序", oldest: "最早的在前", newest: "最新的在前",
      write: "发表评论", replyTo: function (n) { return "回复 " + n; },
      name: "昵称", email: "邮箱", emailHint: "选填，不公开",
      website: "网站", optional: "选填",
      text: "评论内容", hint: "支持 Markdown：**粗体**、*斜体*、`代码`、> 引用、- 列表、[链接](https://…)",
      preview: "预览", post: "发表评论", posting: "正在发表…", save: "保存", saving: "正在保存…",
      reply: "回复", cancel: "取消", edit: "编辑", del: "删除", report: "举报",
      confirmDelete: "确定删除这条评论吗？", yesDelete: "确定删除", keep: "保留",
      reason: "原因", reasons: { spam: "垃圾信息", abuse: "辱骂或骚扰", "off-topic": "与主题无关", other: "其他" },
      note: "补充说明", sendReport: "提交举报",
      reported: "谢谢，管理员会尽快查看。",
      anonymous: "匿名", pending: "等待审核",
      pendingNote: "审核通过之前，只有你能看到这条评论。",
      published: "评论已发表。",
      held: "谢谢！你的评论正在等待审核，目前只有你能看到。",
      rejected: "你的评论未被接受。",
      editRejected: "修改未被接受，这条评论现已对其他读者隐藏。管理员仍能看到它，并可能恢复。",
      updated: "评论已更新。", updatedHeld: "修改后的评论正在等待审核。",
      deleted: "评论已删除。", removed: "此评论已被删除。",
      tooMany: function (s) { return "评论太频繁，请在 " + s + " 秒后重试。"; },
      tooManyOther: function (s) { return "操作太频繁，请在 " + s + " 秒后重试。"; },
      network: "无法连接评论服务器，请检查网络后重试。",
      failed: "出了点问题，请稍后重试。",
      windowClosed: "已超过可修改的时限。",
      textShort: "请填写评论内容（至少 2 个字）。",
      loadMore: "加载更多评论", loading: "正在加载评论…",
      loadFailed: "评论加载失败。", moreFailed: "更多评论加载失败。", retry: "重试", close: "关闭",
      inReplyTo: "回复", removedOne: "已删除的评论", edited: "已编辑", justNow: "刚刚",
      honeypot: "请勿填写此项", sep: "：",
      // The server explains field errors in English: here, one line per field it checks.
      fieldErr: {
        author: "最多 64 个字。", email: "请填写有效的邮箱地址，例如 name@example.com。",
        website: "请填写有效的网址（http:// 或 https://）。", text: "请填写 2 至 10000 个字。", note: "最多 500 个字。"
      }
    }
  };

  var rawLang = opt.lang || document.documentElement.lang || navigator.language || "en";
  var LANG = /^zh/i.test(rawLang) ? "zh-CN" : "en";
  var T = STRINGS[LANG];
  var FIELD = { author: T.name, email: T.email, website: T.website, text: T.text, note: T.note };

  var settings = {
    uri: threadUri(),
    title: opt.title || document.title || "",
    sort: opt.sort === "newest" ? "newest" : "oldest",
    depth: Math.max(1, Math.min(10, parseInt(opt.maxDepth, 10) || 3)),
    perPage: Math.max(1, Math.min(200, parseInt(opt.perPage, 10) || 50)),
    theme: /^(light|dark)$/.test(opt.theme || "") ? opt.theme : "auto"
  };

  function threadUri() {
    if (opt.uri) return opt.uri;
    var canonical = document.querySelector('link[rel="canonical"][href]');
    if (canonical) {
      try { return new URL(canonical.href, location.href).pathname; } catch (e) { /* ignore */ }
    }
    return location.pathname;
  }

  // -- small helpers -----------------------------------------------------------------------

  function h(tag, props) {
    var el = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      var v = props[k];
      if (v == null || v === false) return;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    });
    for (var i = 2; i < arguments.length; i++) {
      [].concat(arguments[i]).forEach(function (kid) {
        if (kid != null && kid !== false) el.append(kid); // strings become text nodes
      });
    }
    return el;
  }

  var uid = 0;
  function nextId(name) { uid += 1; return "cm-" + name + "-" + uid; }

  function store(key, value) {
    try {
      if (value === undefined) return JSON.parse(localStorage.getItem(key) || "{}") || {};
      localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage disabled: the widget still works for this page view */ }
    return {};
  }

  function esc(s) {
    return s.replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // -- markdown preview: the server's subset, escaped first, then tags added ----------------
  // It follows the server's rules (markdown-it, then bleach's linkifier; see sanitising.py)
  // for emphasis and bare URLs, so what the preview shows bold or linked is what gets published.

  var LINK_ATTRS = ' rel="nofollow ugc noopener noreferrer"';
  // \u0001N\u0002 stands for held HTML (code, links) until the end: never taken from the input.
  var HELD = /\u0001(\d+)\u0002/g;

  function inline(raw) {
    var keep = [];
    function unhold(t) { return t.replace(HELD, function (m, i) { return keep[+i] || ""; }); }
    // Held HTML is complete: placeholders inside are resolved now, so none is restored twice.
    function hold(html) { keep.push(unhold(html)); return "\u0001" + (keep.length - 1) + "\u0002"; }
    var s = esc(raw.replace(/[\u0001\u0002]/g, ""));
    // Code spans: a run of backticks closes at the next run of the same length.
    s = s.replace(/(^|[^`])(`+)(?!`)([\s\S]*?[^`])\2(?!`)/g, function (m, lead, ticks, code) {
      return lead + hold("<code>" + code.replace(/\n/g, " ").replace(/^ ([\s\S]+) $/, "$1") + "</code>");
    });
    s = s.replace(/\[([^\]]+)\]\(((?:https?:\/\/|mailto:)[^\s()\u0001\u0002]+)\)/g, function (m, label, url) {
      return hold('<a href="' + url + '"' + LINK_ATTRS + ">" + emphasis(label) + "</a>");
    });
    return unhold(linkify(emphasis(s)).replace(/\n/g, "<br>"));
  }

  // Emphasis as in CommonMark (and markdown-it on the server): whether a run of * or _ can open
  // or close depends on the characters either side, so 是**“重点”**内 stays literal.
  var PUNCT = /[\p{P}\p{S}\u0001\u0002]/u; // held code and links start and end with punctuation
  var SPACE = /[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/;

  function before(s, i) { return (/[\s\S]$/u.exec(s.slice(Math.max(0, i - 2), i)) || [" "])[0]; }
  function after(s, i) { return i < s.length ? String.fromCodePoint(s.codePointAt(i)) : " "; }

  function emphasis(s) {
    var tok = [], dl = [], re = /\*+|_+/g, m, at = 0, i, k;
    while ((m = re.exec(s))) {
      var c = m[0][0], last = before(s, m.index), next = after(s, re.lastIndex);
      var lp = PUNCT.test(last), np = PUNCT.test(next), ls = SPACE.test(last), ns = SPACE.test(next);
      var left = !ns && (!np || ls || lp), right = !ls && (!lp || ns || np);
      var open = left && (c === "*" || !right || lp), close = right && (c === "*" || !left || np);
      tok.push(s.slice(at, m.index));
      for (k = 0; k < m[0].length; k++) {
        dl.push({ c: c, n: m[0].length, t: tok.length, end: -1, open: open, close: close });
        tok.push(c);
      }
      at = re.lastIndex;
    }
    tok.push(s.slice(at));
    pair(dl);
    for (i = dl.length - 1; i >= 0; i--) {
      var d = dl[i], e = dl[d.end];
      if (!e) continue;
      var p = dl[i - 1];
      var strong = p && p.end === d.end + 1 && p.c === d.c && p.t === d.t - 1 && dl[d.end + 1].t === e.t + 1;
      var tag = strong ? "strong" : "em";
      tok[d.t] = "<" + tag + ">";
      tok[e.t] = "</" + tag + ">";
      if (strong) { tok[p.t] = tok[dl[d.end + 1].t] = ""; i--; }
    }
    return tok.join("");
  }

  // markdown-it's balance_pairs: match each closing delimiter with the nearest opener.
  function pair(dl) {
    var bottom = {}, jumps = [], head = 0, lastTok = -2;
    for (var ci = 0; ci < dl.length; ci++) {
      var closer = dl[ci];
      jumps.push(0);
      if (dl[head].c !== closer.c || lastTok !== closer.t - 1) head = ci;
      lastTok = closer.t;
      if (!closer.close) continue;
      var floor = bottom[closer.c] || (bottom[closer.c] = [-1, -1, -1, -1, -1, -1]);
      var slot = (closer.open ? 3 : 0) + closer.n % 3;
      var oi = head - jumps[head] - 1, found = false;
      var newFloor = oi;
      while (oi > floor[slot]) {
        var opener = dl[oi];
        if (opener.c === closer.c && opener.open && opener.end < 0 &&
            !((opener.close || closer.open) && (opener.n + closer.n) % 3 === 0 && (opener.n % 3 || closer.n % 3))) {
          var lastJump = oi > 0 && !dl[oi - 1].open ? jumps[oi - 1] + 1 : 0;
          jumps[ci] = ci - oi + lastJump;
          jumps[oi] = lastJump;
          closer.open = false;
          opener.end = ci;
          opener.close = false;
          found = true;
          lastTok = -2;
          break;
        }
        oi -= jumps[oi] + 1;
      }
      if (!found) floor[slot] = newFloor;
    }
  }

  // Bare http(s) URLs, found as the server's linkifier finds them (sanitising.py _LINKIFY_URL_RE)
  // in the escaped text: &amp; and &#39; stand for & and ', and held HTML ends a URL.
  var TRAILING = ".,:;!?'*\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\uff09";
  var HOST_LABEL = "[\\p{L}\\p{N}](?:[\\p{L}\\p{N}_-]*[\\p{L}\\p{N}])?";
  var URL_CHARS = "\\s{}|\\\\^`<>\"&\\u0001\\u0002"; // those that end a URL (& only as &amp;)
  var URL_RE = new RegExp("https?://(?:" + HOST_LABEL + "\\.)+" + HOST_LABEL + "(?::[0-9]{1,5})?" +
    "(?![:@\\p{L}\\p{N}_-]|\\.[\\p{L}\\p{N}_-])" + // the whole host: no credentials, no partial match
    "(?:[/?#](?:(?:&amp;|&#39;|[^" + URL_CHARS + "])*(?:&amp;|[^" + URL_CHARS + TRAILING + "]))?)?", "giu");
  var WORD = /[\p{L}\p{N}_]/u;

  function linkify(s) {
    return s.replace(URL_RE, function (m, at) {
      // No word boundary (详见https://…): not a link here, but a later http in it may be.
      if (WORD.test(before(s, at))) return m[0] + linkify(m.slice(1));
      var url = m.replace(/&amp;/g, "&").replace(/&#39;/g, "'");
      // Unbalanced ")" and trailing punctuation stay outside the link. Parentheses are counted
      // once and the count kept as ")" are trimmed: linear, however many there are.
      var end = url.length, opens = url.split("(").length, closes = url.split(")").length;
      for (; end; end--) {
        var c = url.charAt(end - 1);
        if (c === ")" && closes > opens) closes--;
        else if (TRAILING.indexOf(c) < 0) break;
      }
      var tail = url.slice(end);
      url = url.slice(0, end);
      return '<a href="' + esc(url) + '"' + LINK_ATTRS + ">" + esc(url) + "</a>" + esc(tail);
    });
  }

  var LIST = /^\s{0,3}([-*+]|\d{1,9}[.)])(\s+|$)/;
  var QUOTE = /^\s{0,3}>\s?/;
  // What ends a paragraph: a fence, a quote, a list item with text (a numbered one from 1 only).
  var BLOCK = /^(```|\s{0,3}>|\s{0,3}([-*+]|0{0,8}1[.)])\s+\S)/;

  // A line that carries on the text of the list item or quote above it (markdown-it's "lazy"
  // continuation): not blank and starting no block of its own.
  function lazy(line) { return !!line.trim() && !/^```/.test(line) && !QUOTE.test(line) && !LIST.test(line); }

  function markdown(src) {
    var lines = src.replace(/\r\n?/g, "\n").split("\n");
    var out = [];
    var i = 0;
    var buf;
    while (i < lines.length) {
      var line = lines[i];
      if (/^```/.test(line)) {
        buf = [];
        for (i++; i < lines.length && !/^```/.test(lines[i]); i++) buf.push(lines[i]);
        // Each line ends with a newline, as in markdown-it; not the last when no fence closes.
        if (i++ < lines.length) buf.push("");
        out.push("<pre><code>" + esc(buf.join("\n")) + "</code></pre>");
      } else if (!line.trim()) {
        i++;
      } else if (QUOTE.test(line)) {
        buf = [];
        // Quoted lines, and lazy ones after quoted text (not after a blank line, not in code).
        for (var code = false, text = false; i < lines.length && (QUOTE.test(lines[i]) || (text && lazy(lines[i]))); i++) {
          var quoted = lines[i].replace(QUOTE, "");
          if (/^```/.test(quoted)) code = !code;
          text = !code && !!quoted.trim() && !/^```/.test(quoted);
          buf.push(quoted);
        }
        if (code && i < lines.length) buf.push("```"); // code the quote's end closes
        out.push("<blockquote>" + markdown(buf.join("\n")) + "</blockquote>");
      } else if (LIST.test(line)) {
        var mark = LIST.exec(line)[1];
        var tag = /\d/.test(mark) ? "ol" : "ul";
        buf = [];
        // Items with the same marker (- * + or the . or ) after a number): another starts a list.
        while (i < lines.length && LIST.test(lines[i]) && LIST.exec(lines[i])[1].slice(-1) === mark.slice(-1)) {
          var li = [lines[i++].replace(LIST, "").trim()];
          while (li[0] && i < lines.length && lazy(lines[i])) li.push(lines[i++].trim());
          buf.push("<li>" + inline(li.join("\n")) + "</li>");
        }
        out.push("<" + tag + ">" + buf.join("") + "</" + tag + ">");
      } else {
        buf = [];
        // One paragraph is one run of inline text (emphasis may span lines), as on the server.
        do { buf.push(lines[i++].trim()); } while (i < lines.length && lines[i].trim() && !BLOCK.test(lines[i]));
        out.push("<p>" + inline(buf.join("\n")) + "</p>");
      }
    }
    return out.join("");
  }

  // -- time --------------------------------------------------------------------------------

  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(LANG, { numeric: "auto" }) : null;
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function relative(date) {
    var s = (date.getTime() - Date.now()) / 1000;
    for (var i = 0; i < UNITS.length; i++) {
      if (Math.abs(s) >= UNITS[i][1]) {
        var n = Math.round(s / UNITS[i][1]);
        return rtf ? rtf.format(n, UNITS[i][0]) : date.toLocaleDateString(LANG);
      }
    }
    return T.justNow;
  }

  function timeEl(iso) {
    var date = new Date(iso);
    return h("time", {
      class: "cm-time", datetime: iso,
      title: date.toLocaleString(LANG, { dateStyle: "full", timeStyle: "short" })
    }, relative(date));
  }

  // -- API ---------------------------------------------------------------------------------

  function call(method, path, body, token) {
    var headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token) headers["X-Edit-Token"] = token;
    return fetch(API + "/api/v1" + path, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      mode: "cors", credentials: "omit", referrerPolicy: "no-referrer", cache: "no-store"
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = {};
        try { data = text ? JSON.parse(text) : {}; } catch (e) { /* not JSON */ }
        return { status: res.status, data: data, retry: res.headers.get("Retry-After") };
      });
    }, function () { return { status: 0, data: {}, retry: null }; });
  }

  // What to tell the reader about a failed call; field errors come back with the field name.
  function problem(r, tooMany) {
    var err = r.data.error || {};
    if (r.status === 0) return T.network;
    if (r.status === 429) return (tooMany || T.tooManyOther)(parseInt(r.retry, 10) || 60);
    if (r.status === 422) return T.rejected;
    if (err.code === "edit_window_closed" || err.code === "not_editable") return T.windowClosed;
    if (r.status === 400 && err.field === "text" && /at least/.test(err.message || "")) return T.textShort;
    if (r.status === 400 && FIELD[err.field]) {
      return FIELD[err.field] + T.sep + (T.fieldErr ? T.fieldErr[err.field] : err.message);
    }
    return T.failed;
  }

  // -- own comments (edit tokens stay in this browser only) -------------------------------

  var own = store(OWN_KEY);
  (function prune() {
    var cutoff = Date.now() - 60 * 86400000;
    Object.keys(own).forEach(function (id) { if (!(own[id].c > cutoff)) delete own[id]; });
  })();

  function remember(c, token) {
    own[c.id] = { t: token, s: SITE, u: settings.uri, c: Date.now() };
    store(OWN_KEY, own);
  }

  function forget(id) { delete own[id]; store(OWN_KEY, own); }

  // -- widget ------------------------------------------------------------------------------

  var root = null; // looked up in start(): the script may run before the target is parsed
  // gen: the latest thread request; an older one that answers late is ignored.
  // list: how many times the list was filled anew (a reader's own comments go into the
  // list they were fetched for, not into one that replaced it).
  // next: the server's cursor for the page after the last one shown (null: no more).
  // mine: the reader's own comments as they see them (edit window, status), by id, for the
  // list they were fetched for: one a later page brings gets its Edit and Delete there.
  // pages: how many thread pages have come in (a post's answer can tell whether one came
  // while it was on its way, with a total that may already count it).
  var state = { next: null, total: 0, byId: {}, mine: {}, gen: 0, list: 0, pages: 0, loading: false };
  var el = {};

  function loadStyles() {
    var href = API + "/embed.css?v=" + CSS_VERSION;
    if (document.querySelector('link[href="' + href + '"]')) return;
    document.head.append(h("link", { rel: "stylesheet", href: href }));
  }

  function applyTheme() {
    root.classList.remove("cm-light", "cm-dark");
    if (settings.theme !== "auto") {
      root.classList.add("cm-" + settings.theme, "cm-solid");
      return;
    }
    // Follow the page: the first opaque background behind the widget decides.
    for (var n = root.parentElement; n; n = n.parentElement) {
      var m = /rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)/.exec(getComputedStyle(n).backgroundColor);
      if (m && (m[4] === undefined || +m[4] > 0.5)) {
        var luma = 0.2126 * m[1] + 0.7152 * m[2] + 0.0722 * m[3];
        root.classList.add(luma < 128 ? "cm-dark" : "cm-light");
        return;
      }
    }
  }

  function announce(text) {
    el.live.textContent = "";
    setTimeout(function () { el.live.textContent = text; }, 50);
  }

  function setCount(n) {
    state.total = Math.max(0, n);
    el.count.textContent = T.count(state.total);
    el.empty.hidden = state.total > 0 || !!el.list.querySelector(".cm-item");
  }

  function build() {
    root.classList.add("cm-root");
    root.setAttribute("lang", LANG);
    var titleId = nextId("title");
    el.count = h("span", { class: "cm-count" });
    // The list changes only once the other order has come in; until then it stays as it is.
    el.sort = h("select", { id: nextId("sort"), class: "cm-select", onchange: function () {
      load(null, el.sort.value);
    } },
    h("option", { value: "oldest", text: T.oldest }), h("option", { value: "newest", text: T.newest }));
    el.sort.value = settings.sort;
    el.live = h("div", { class: "cm-sr", "aria-live": "polite", role: "status" });
    el.list = h("ol", { class: "cm-list", "aria-labelledby": titleId });
    el.empty = h("p", { class: "cm-empty", hidden: true }, T.none);
    el.status = h("p", { class: "cm-loading", role: "status", "aria-live": "polite" }, T.loading);
    // Not disabled while loading (aria-disabled instead): a disabled button would lose focus.
    el.more = h("button", { type: "button", class: "cm-button cm-more", hidden: true, onclick: function () {
      if (!state.loading && state.next) load(state.next, null, true);
    } }, T.loadMore);
    el.moreStatus = h("p", { class: "cm-status cm-more-status", role: "status", "aria-live": "polite" });
    el.title = h("h2", { id: titleId, class: "cm-title", tabindex: "-1" }, el.count);
    root.replaceChildren(
      h("section", { class: "cm-widget", "aria-labelledby": titleId },
        h("header", { class: "cm-head" },
          el.title,
          h("div", { class: "cm-sortbox" }, h("label", { for: el.sort.id }, T.sort), el.sort)),
        commentForm(null, null),
        el.status, el.empty, el.list, el.more, el.moreStatus, el.live)
    );
    setCount(0);
    el.empty.hidden = true;
  }

  // Load one page of the thread in this order: the first (the list is replaced, once it is
  // in), or the one after a cursor the server gave (Load more). A cursor names the last
  // top-level comment shown, not a count: comments published or removed meanwhile neither
  // repeat nor skip any. state.next and settings.sort change only when the page has come in.
  // Asked for by a button (Load more, Retry) that is gone now, keyboard focus moves on to
  // what replaced it.
  function load(cursor, sort, pressed) {
    sort = sort || settings.sort;
    var gen = state.gen += 1;
    var more = !!cursor;
    var where = more ? el.moreStatus : el.status; // a message shows where the reader acted
    // A load this one takes over from says nothing more beside Load more.
    if (!more) { el.moreStatus.replaceChildren(); el.moreStatus.classList.remove("cm-bad"); }
    state.loading = true;
    el.more.setAttribute("aria-disabled", "true");
    where.classList.remove("cm-bad");
    where.hidden = false;
    where.replaceChildren(T.loading);
    var q = "?site=" + encodeURIComponent(SITE) + "&uri=" + encodeURIComponent(settings.uri) +
      "&sort=" + sort + "&per_page=" + settings.perPage +
      (more ? "&cursor=" + encodeURIComponent(cursor) : "");
    return call("GET", "/comments" + q).then(function (r) {
      if (gen !== state.gen) return;
      state.loading = false;
      el.more.removeAttribute("aria-disabled");
      if (r.status !== 200) {
        el.sort.value = settings.sort;
        var retry = h("button", { type: "button", class: "cm-link", onclick: function () { load(cursor, sort, true); } }, T.retry);
        where.replaceChildren(more ? T.moreFailed : T.loadFailed, " ", retry);
        if (more) where.classList.add("cm-bad");
        if (pressed && focusLost()) retry.focus();
        return;
      }
      el.status.hidden = true;
      el.moreStatus.replaceChildren();
      if (!more) {
        settings.sort = el.sort.value = sort;
        state.byId = {};
        state.mine = {};
        state.list += 1;
        el.list.replaceChildren();
      }
      var fresh = null;
      state.pages += 1;
      state.next = r.data.next || null;
      r.data.comments.forEach(function (node) {
        var known = !!state.byId[node.id];
        var li = placeRoot(node);
        if (!known && !fresh) fresh = li;
      });
      nestWaiting();
      el.more.hidden = !state.next;
      setCount(r.data.total);
      if (pressed && (focusLost() || document.activeElement === el.more)) {
        // On to the first comment it brought: the button may be hidden now.
        fresh = more && fresh;
        (fresh ? fresh.querySelector(":scope > .cm-comment") : more && !el.more.hidden ? el.more : el.title).focus();
      }
      if (!more) return loadOwn(state.list);
    });
  }

  // Set the heading's count from the server's count of published comments.
  function recount() {
    call("POST", "/counts", { site: SITE, uris: [settings.uri] }).then(function (r) {
      var n = (r.data.counts || {})[settings.uri];
      if (r.status === 200 && typeof n === "number") setCount(n);
    });
  }

  function focusLost() {
    var a = document.activeElement;
    return !a || a === document.body || !a.isConnected;
  }

  // Bring back this reader's own comments: held ones only they can see, and edit controls.
  // They go in oldest first once all are in, as a reload would show them (a reply after its
  // held parent), whatever order the answers came in.
  function loadOwn(list) {
    var mine = Object.keys(own).filter(function (id) { return own[id].s === SITE && own[id].u === settings.uri; });
    return Promise.all(mine.map(function (id) {
      return call("GET", "/comments/" + id, null, own[id].t).then(function (r) {
        var c = r.data.comment;
        if (r.status === 404 || r.status === 403 || (c && !/^(published|pending)$/.test(c.status)) ||
            (c && c.status === "published" && new Date(c.editable_until) < new Date())) {
          forget(id);
          return null;
        }
        return c && c.status ? c : null;
      });
    })).then(function (found) {
      if (list !== state.list) return; // the list was replaced meanwhile: its load adds them
      found.filter(Boolean).sort(function (a, b) {
        return new Date(a.created) - new Date(b.created) || a.id - b.id;
      }).forEach(function (c) {
        state.mine[c.id] = c;
        var item = state.byId[c.id];
        // A held one goes where it belongs; one whose parent is not shown yet waits for it.
        if (!item && c.status === "pending") item = insert(c, c.parent);
        if (item) makeOwn(item, c);
      });
      el.empty.hidden = state.total > 0 || !!el.list.querySelector(".cm-item");
    });
  }

  // A top-level comment of a page, in the order of the pages. The reader's own comments that
  // have no place on the pages shown yet wait at the end of the list (.cm-waiting): oldest
  // first their new top-level comments, in either order their held replies to a comment not
  // shown yet. A page's comments go before them, and one of them the page brings moves into
  // its place (a reply: under its parent, see nestWaiting).
  function placeRoot(node) {
    claim(node);
    var shown = state.byId[node.id];
    if (shown && !shown.cm.waitFor) shown.classList.remove("cm-waiting");
    var mark = el.list.querySelector(":scope > .cm-waiting");
    if (shown && shown.parentNode === el.list && !shown.cm.waitFor) {
      // It moves with the replies listed flat after it (below the depth cap).
      var group = [shown];
      for (var m = shown.nextElementSibling; m && m.cm.level > 1; m = m.nextElementSibling) group.push(m);
      if (group[group.length - 1].nextElementSibling !== mark) {
        group.forEach(function (g) { el.list.insertBefore(g, mark); });
      }
    }
    return place(node, 1, el.list, null, mark);
  }

  // The reader's own replies waiting at the end of the list that come with this node's tree
  // (published meanwhile) leave the end first: place() puts them where the tree has them.
  function claim(node) {
    (node.replies || []).forEach(function (kid) {
      var li = state.byId[kid.id];
      if (li && li.cm.waitFor) li.remove();
      claim(kid);
    });
  }

  // Render a node and its replies (returning its item); below the depth cap replies are listed
  // flat, with a pointer. A node already shown (the reader's own, posted here) is not shown
  // again; only replies it does not have yet are added to it. The reader's own reply that was
  // waiting for its parent moves into its place here.
  function place(node, level, list, parent, ref) {
    var li = state.byId[node.id];
    if (li && li.cm.waitFor) {
      unwait(li, level, level > settings.depth ? parent : null);
      list.insertBefore(li, ref || null);
    } else if (li) {
      level = li.cm.level;
      list = li.parentNode || list;
    } else {
      li = item(node, level, level > settings.depth ? parent : null);
      list.insertBefore(li, ref || null);
    }
    ownNode(li, node);
    var kids = node.replies || [];
    if (!kids.length) return li;
    var target = list;
    if (level < settings.depth) {
      target = li.querySelector(":scope > .cm-replies");
      if (!target) li.append(target = h("ol", { class: "cm-replies" }));
      ref = null;
    }
    // Below the server's depth cap a reply is listed in an ancestor's replies, beside its real
    // parent: point at that. A parent not sent at all was removed (and its placeholder pruned).
    var known = {};
    known[node.id] = node;
    kids.forEach(function (kid) { known[kid.id] = kid; });
    kids.forEach(function (kid) {
      place(kid, level + 1, target, kid.parent ? known[kid.parent] || { deleted: true } : node, ref);
    });
    return li;
  }

  // A comment of a page that is the reader's own: with its Edit and Delete (whichever page
  // brings it), and published now if it was held when it was shown (a moderator approved it).
  function ownNode(li, node) {
    if (node.deleted || li.cm.comment.deleted || !own[node.id]) return;
    var c = li.cm.own ? li.cm.comment : state.mine[node.id];
    if (!c || (li.cm.own && c.status !== "pending")) return;
    var now = {};
    Object.keys(c).forEach(function (k) { now[k] = c[k]; });
    now.status = "published";
    makeOwn(li, now);
  }

  // The reader's own replies waiting at the end of the list whose parent a page brought: each
  // goes under it, as if posted there.
  function nestWaiting() {
    el.list.querySelectorAll(":scope > .cm-waiting").forEach(function (li) {
      var parentLi = li.cm.waitFor && state.byId[li.cm.waitFor];
      if (!parentLi) return;
      var level = parentLi.cm.level + 1;
      unwait(li, level, level > settings.depth ? parentLi.cm.comment : null);
      attach(li, parentLi);
    });
  }

  // A waiting reply takes its level, saying whom it answers when listed flat (parent given).
  function unwait(li, level, parent) {
    li.classList.remove("cm-waiting");
    li.cm.waitFor = null;
    li.cm.level = level;
    var meta = li.querySelector(":scope > .cm-comment > .cm-meta");
    if (!meta) return;
    var old = meta.querySelector(":scope > .cm-replyto");
    if (old) old.remove();
    if (parent) meta.querySelector(":scope > .cm-author").after(replyTo(parent));
  }

  function hue(name) {
    var n = 0;
    for (var i = 0; i < name.length; i++) n = (n * 31 + name.charCodeAt(i)) % 8;
    return "cm-hue" + n;
  }

  function item(c, level, parent) {
    var li = h("li", { class: "cm-item", id: "cm-" + c.id });
    li.cm = { level: level, comment: c };
    state.byId[c.id] = li;
    if (c.deleted) {
      li.append(removedNote());
      return li;
    }
    var name = c.author || T.anonymous;
    var safeSite = /^https?:\/\//i.test(c.website || "");
    var article = h("article", { class: "cm-comment", tabindex: "-1", "aria-label": name },
      h("header", { class: "cm-meta" },
        h("span", { class: "cm-avatar " + hue(name), "aria-hidden": "true" }, Array.from(name)[0].toUpperCase()),
        safeSite
          ? h("a", { class: "cm-author", href: c.website, rel: "nofollow ugc noopener noreferrer" }, name)
          : h("span", { class: "cm-author" }, name),
        parent ? replyTo(parent) : null,
        h("a", { class: "cm-permalink", href: "#cm-" + c.id }, timeEl(c.created)),
        c.edited ? h("span", { class: "cm-edited" }, T.edited) : null),
      body(c.html),
      h("div", { class: "cm-actions" },
        h("button", { type: "button", class: "cm-link cm-reply", onclick: function (e) { openReply(li, e.currentTarget); } }, T.reply),
        h("button", { type: "button", class: "cm-link cm-report", onclick: function (e) { openReport(li, e.currentTarget); } }, T.report)),
      h("div", { class: "cm-slot" }));
    li.append(article);
    return li;
  }

  function replyTo(parent) {
    return h("span", { class: "cm-replyto" }, T.inReplyTo + " ", parent.id
      ? h("a", { href: "#cm-" + parent.id }, parent.deleted ? T.removedOne : parent.author || T.anonymous)
      : T.removedOne);
  }

  function removedNote() {
    return h("article", { class: "cm-comment cm-removed", tabindex: "-1" }, h("p", { class: "cm-body" }, T.removed));
  }

  function body(html) {
    var div = h("div", { class: "cm-body" });
    div.innerHTML = html; // the server's sanitised HTML (bleach allowlist)
    return div;
  }

  // Put a new or held comment where it belongs: under its parent, else at the sort's start.
  // A reply to a comment not shown yet (on a later page) waits at the end of the list for it.
  function insert(c, parentId) {
    var parentLi = parentId && state.byId[parentId];
    var level = parentLi ? parentLi.cm.level + 1 : 1;
    var li = item(c, level, parentLi && level > settings.depth ? parentLi.cm.comment : null);
    if (parentLi) {
      attach(li, parentLi);
    } else if (parentId) {
      li.cm.waitFor = parentId;
      li.classList.add("cm-waiting");
      el.list.append(li);
    } else if (settings.sort === "newest") {
      el.list.prepend(li);
    } else {
      // Oldest first it belongs after every page still to come: it waits at the end for its own.
      li.classList.add("cm-waiting");
      el.list.append(li);
    }
    return li;
  }

  // Put a reply under its parent's item: in its replies, or below the depth cap listed flat.
  function attach(li, parentLi) {
    var level = li.cm.level;
    li.remove(); // a waiting one leaves its place first (it may be right after the parent)
    if (level <= settings.depth) {
      var ol = parentLi.querySelector(":scope > .cm-replies");
      if (!ol) { ol = h("ol", { class: "cm-replies" }); parentLi.append(ol); }
      ol.append(li);
    } else {
      // Listed flat: after the parent's replies already listed after it (deeper levels).
      var last = parentLi;
      while (last.nextElementSibling && last.nextElementSibling.cm.level > parentLi.cm.level) last = last.nextElementSibling;
      last.after(li);
    }
    return li;
  }

  function makeOwn(li, c) {
    li.cm.comment = c;
    li.cm.own = true;
    var article = li.querySelector(":scope > .cm-comment");
    article.classList.add("cm-own");
    article.classList.toggle("cm-pending", c.status === "pending");
    var meta = article.querySelector(".cm-meta");
    var badge = meta.querySelector(".cm-badge");
    var note = article.querySelector(":scope > .cm-note");
    if (c.status === "pending") {
      if (!badge) meta.append(h("span", { class: "cm-badge" }, T.pending));
      if (!note) article.querySelector(".cm-body").after(h("p", { class: "cm-note" }, T.pendingNote));
    } else {
      if (badge) badge.remove();
      if (note) note.remove();
    }
    var actions = article.querySelector(".cm-actions");
    actions.replaceChildren();
    if (c.status === "published") {
      actions.append(h("button", { type: "button", class: "cm-link cm-reply", onclick: function (e) { openReply(li, e.currentTarget); } }, T.reply));
    }
    if (new Date(c.editable_until) > new Date()) {
      actions.append(
        h("button", { type: "button", class: "cm-link cm-edit", onclick: function (e) { openEdit(li, e.currentTarget); } }, T.edit),
        h("button", { type: "button", class: "cm-link cm-delete", onclick: function (e) { openDelete(li, e.currentTarget); } }, T.del));
    }
  }

  // -- forms -------------------------------------------------------------------------------

  function field(name, label, input, hint) {
    var errorId = nextId("err");
    input.id = nextId(name);
    input.name = name;
    var describedBy = errorId;
    var hintEl = null;
    if (hint) {
      hintEl = h("span", { class: "cm-hint", id: nextId("hint") }, hint);
      describedBy = hintEl.id + " " + errorId;
    }
    input.setAttribute("aria-describedby", describedBy);
    return h("div", { class: "cm-field cm-field-" + name },
      h("label", { for: input.id }, label, hintEl ? " " : null, hintEl),
      input, h("p", { class: "cm-error", id: errorId, hidden: true }));
  }

  function showFieldError(form, name, message) {
    var input = form.querySelector('[name="' + name + '"]');
    if (!input) return false;
    var err = document.getElementById(input.getAttribute("aria-describedby").split(" ").pop());
    input.setAttribute("aria-invalid", "true");
    err.textContent = message;
    err.hidden = false;
    input.focus();
    return true;
  }

  function clearErrors(form) {
    form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".cm-error").forEach(function (n) { n.hidden = true; n.textContent = ""; });
  }

  function textArea(value, label, onSubmit) {
    var area = h("textarea", { rows: "4", required: true, maxlength: "10000" });
    area.value = value || "";
    var preview = h("div", { class: "cm-preview", hidden: true },
      h("p", { class: "cm-preview-label" }, T.preview), h("div", { class: "cm-preview-body" }));
    function update() {
      var text = area.value.trim();
      preview.hidden = !text;
      preview.lastChild.innerHTML = markdown(text); // escaped first, then tags added
    }
    area.addEventListener("input", update);
    area.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); onSubmit(); }
    });
    update();
    return { area: area, preview: preview, update: update, field: field("text", label, area, T.hint) };
  }

  function commentForm(parentLi, opener) {
    var me = store(ME_KEY);
    var started = Date.now();
    var form = h("form", { class: "cm-form", novalidate: true });
    var author = h("input", { type: "text", autocomplete: "nickname", maxlength: "64", value: me.author || "" });
    var email = h("input", { type: "email", autocomplete: "email", maxlength: "254", value: me.email || "" });
    var website = h("input", { type: "url", autocomplete: "url", maxlength: "254", placeholder: "https://", value: me.website || "" });
    var trap = h("input", { type: "text", name: "homepage", tabindex: "-1", autocomplete: "off" });
    var status = h("p", { class: "cm-status", role: "status", "aria-live": "polite" });
    if (!parentLi) el.formStatus = status;
    var submitBtn = h("button", { type: "submit", class: "cm-button cm-primary" }, T.post);
    var text = textArea("", parentLi ? T.replyTo(parentLi.cm.comment.author || T.anonymous) : T.write, function () { form.requestSubmit(); });
    form.append(
      text.field, text.preview,
      h("div", { class: "cm-row" },
        field("author", T.name, author, T.optional),
        field("email", T.email, email, T.emailHint),
        field("website", T.website, website, T.optional)),
      h("div", { class: "cm-trap", "aria-hidden": "true" }, h("label", {}, T.honeypot, trap)),
      h("div", { class: "cm-buttons" }, submitBtn,
        parentLi ? h("button", { type: "button", class: "cm-button", onclick: close }, T.cancel) : null),
      status);

    function close() {
      form.remove();
      if (opener) opener.focus();
    }
    form.addEventListener("keydown", function (e) { if (e.key === "Escape" && parentLi) close(); });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (submitBtn.disabled) return;
      clearErrors(form);
      status.textContent = "";
      status.classList.remove("cm-bad");
      if (text.area.value.trim().length < 2) { showFieldError(form, "text", T.textShort); return; }
      var payload = {
        site: SITE, uri: settings.uri, title: settings.title,
        parent: parentLi ? parentLi.cm.comment.id : null,
        author: author.value, email: email.value, website: website.value, text: text.area.value,
        hp: trap.value, elapsed_ms: Date.now() - started
      };
      store(ME_KEY, { author: author.value, email: email.value, website: website.value });
      submitBtn.disabled = true;
      submitBtn.textContent = T.posting;
      var pages = state.pages;
      call("POST", "/comments", payload).then(function (r) {
        submitBtn.disabled = false;
        submitBtn.textContent = T.post;
        if (r.status === 201 || r.status === 202) {
          var c = r.data.comment;
          remember(c, r.data.edit_token);
          state.mine[c.id] = c;
          // A page that came while the answer was on its way may have brought it already
          // (Load more, or the other order): it is shown once, and that page's total counts it.
          var li = state.byId[c.id];
          var shown = !!li;
          if (!shown) li = insert(c, c.parent);
          makeOwn(li, c);
          text.area.value = "";
          text.update();
          var message = r.status === 201 ? T.published : T.held;
          if (r.status === 201 && !shown) {
            // A page that came meanwhile without it may or may not have counted it: ask.
            if (state.pages === pages) setCount(state.total + 1); else recount();
          }
          el.empty.hidden = true;
          if (parentLi) { form.remove(); announce(message); } else { status.textContent = message; }
          li.querySelector(".cm-comment").focus();
          return;
        }
        var err = r.data.error || {};
        var message2 = problem(r, T.tooMany);
        if (r.status === 400 && err.field && showFieldError(form, err.field, message2)) return;
        status.textContent = message2;
        status.classList.add("cm-bad");
      });
    });
    if (parentLi) setTimeout(function () { text.area.focus(); }, 0);
    return form;
  }

  function slotOf(li) { return li.querySelector(":scope > .cm-comment > .cm-slot"); }

  function openReply(li, opener) {
    var slot = slotOf(li);
    var existing = slot.querySelector(".cm-form");
    if (existing) { existing.querySelector("textarea").focus(); return; }
    slot.replaceChildren(commentForm(li, opener));
  }

  // An inline form in a comment's slot; closing it puts focus back on f.opener.
  function inlineForm(li, opener, cls, children, onSubmit) {
    var slot = slotOf(li);
    var status = h("p", { class: "cm-status", role: "status", "aria-live": "polite" });
    var form = h("form", { class: "cm-form cm-small " + cls, novalidate: true }, children, status);
    var f = { form: form, status: status, opener: opener, close: function () {
      form.remove();
      if (f.opener && f.opener.isConnected) f.opener.focus();
    } };
    form.addEventListener("keydown", function (e) { if (e.key === "Escape") f.close(); });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      clearErrors(form);
      status.textContent = "";
      status.classList.remove("cm-bad");
      onSubmit(form, status, f.close);
    });
    slot.replaceChildren(form);
    var first = form.querySelector("textarea, select, button");
    if (first) first.focus();
    return f;
  }

  // The main form's "Your comment is published." is out of date once that comment changes.
  function clearFormStatus() {
    if (!el.formStatus.classList.contains("cm-bad")) el.formStatus.textContent = "";
  }

  function cancelButton() {
    return h("button", { type: "button", class: "cm-button", onclick: function (e) {
      e.currentTarget.form.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape" }));
    } }, T.cancel);
  }

  function fail(status, r, form) {
    var err = r.data.error || {};
    var message = problem(r);
    if (r.status === 400 && err.field && showFieldError(form, err.field, message)) return;
    status.textContent = message;
    status.classList.add("cm-bad");
  }

  function openEdit(li, opener) {
    var c = li.cm.comment;
    var t = own[c.id] || {};
    var save = h("button", { type: "submit", class: "cm-button cm-primary" }, T.save);
    var cancel = cancelButton();
    var text;
    var f = inlineForm(li, opener, "cm-editform", [], function (form, status, close) {
      if (!save.isConnected) return; // refused: nothing more can be saved
      if (text.area.value.trim().length < 2) { showFieldError(form, "text", T.textShort); return; }
      save.disabled = true;
      call("PATCH", "/comments/" + c.id, { text: text.area.value }, t.t).then(function (r) {
        save.disabled = false;
        if (r.status === 200 || r.status === 202) {
          var fresh = r.data.comment;
          var article = li.querySelector(":scope > .cm-comment");
          article.querySelector(".cm-body").replaceWith(body(fresh.html));
          var meta = article.querySelector(".cm-meta");
          if (!meta.querySelector(".cm-edited")) meta.querySelector(".cm-permalink").after(h("span", { class: "cm-edited" }, T.edited));
          if (c.status === "published" && fresh.status !== "published") setCount(state.total - 1);
          if (c.status !== "published" && fresh.status === "published") setCount(state.total + 1);
          makeOwn(li, fresh);
          // The Edit button that opened the form was rebuilt: focus goes back to the new one
          // (or, once the edit window is over, to the comment).
          f.opener = li.querySelector(":scope > .cm-comment .cm-edit") ||
            li.querySelector(":scope > .cm-comment");
          close();
          clearFormStatus();
          announce(fresh.status === "published" ? T.updated : T.updatedHeld);
          return;
        }
        if (r.status === 422) { refused(li, f, text, save, cancel); return; }
        fail(status, r, form);
      });
    });
    text = textArea(c.text || "", T.text, function () { f.form.requestSubmit(); });
    f.form.prepend(text.field, text.preview, h("div", { class: "cm-buttons" }, save, cancel));
    text.area.focus();
  }

  // An edit the server rejected: the comment is stored with it, hidden from other readers and
  // no longer editable. It keeps its place, saying so; the reader's text stays in the form.
  function refused(li, f, text, save, cancel) {
    var c = li.cm.comment;
    forget(c.id);
    if (c.status === "published") setCount(state.total - 1);
    c.status = "rejected";
    var article = li.querySelector(":scope > .cm-comment");
    article.classList.remove("cm-pending");
    article.querySelectorAll(".cm-badge, :scope > .cm-note").forEach(function (n) { n.remove(); });
    article.querySelector(":scope > .cm-actions").replaceChildren();
    var message = h("p", { class: "cm-body cm-bad", tabindex: "-1" }, T.editRejected);
    article.querySelector(":scope > .cm-body").replaceWith(message);
    save.remove();
    cancel.textContent = T.close;
    text.area.readOnly = true;
    f.opener = message;
    clearFormStatus();
    message.focus();
  }

  // Take a deleted comment off the page (a placeholder if replies hang on it); return what
  // keyboard focus goes to: the comment after it, else before it, else its parent or the list.
  function dropOwn(li) {
    var c = li.cm.comment;
    forget(c.id);
    if (c.status === "published") setCount(state.total - 1);
    var replies = li.querySelector(":scope > .cm-replies");
    var next = li.nextElementSibling;
    var near = next || li.previousElementSibling || li.parentNode.closest(".cm-item");
    var to;
    if ((replies && replies.children.length) || (next && next.cm.level > li.cm.level)) {
      to = removedNote();
      li.querySelector(":scope > .cm-comment").replaceWith(to);
    } else {
      li.remove();
      delete state.byId[c.id];
      to = near ? near.querySelector(":scope > .cm-comment") : el.title;
    }
    el.empty.hidden = state.total > 0 || !!el.list.querySelector(".cm-item");
    return to;
  }

  function openDelete(li, opener) {
    var c = li.cm.comment;
    var yes = h("button", { type: "submit", class: "cm-button cm-danger" }, T.yesDelete);
    inlineForm(li, opener, "cm-deleteform",
      [h("p", { class: "cm-confirm" }, T.confirmDelete), h("div", { class: "cm-buttons" }, yes, cancelButton())],
      function (form, status) {
        yes.disabled = true;
        call("DELETE", "/comments/" + c.id, null, (own[c.id] || {}).t).then(function (r) {
          yes.disabled = false;
          if (r.status === 204) {
            dropOwn(li).focus();
            clearFormStatus();
            announce(T.deleted);
            return;
          }
          fail(status, r, form);
        });
      });
  }

  function openReport(li, opener) {
    var c = li.cm.comment;
    var reason = h("select", { class: "cm-select" }, Object.keys(T.reasons).map(function (k) {
      return h("option", { value: k }, T.reasons[k]);
    }));
    var note = h("textarea", { rows: "2", maxlength: "500" });
    var send = h("button", { type: "submit", class: "cm-button cm-primary" }, T.sendReport);
    inlineForm(li, opener, "cm-reportform", [
      field("reason", T.reason, reason),
      field("note", T.note, note, T.optional),
      h("div", { class: "cm-buttons" }, send, cancelButton())
    ], function (form, status) {
      send.disabled = true;
      call("POST", "/comments/" + c.id + "/report", { reason: reason.value, note: note.value }).then(function (r) {
        send.disabled = false;
        if (r.status === 201) {
          var done = h("p", { class: "cm-status cm-good", tabindex: "-1" }, T.reported);
          form.replaceWith(done);
          done.focus();
          announce(T.reported);
          return;
        }
        fail(status, r, form);
      });
    });
  }

  // -- count widget: every [data-comments-count] on the page, in one request per 100 -------

  function counts() {
    var nodes = Array.from(document.querySelectorAll("[data-comments-count]"));
    var uris = Array.from(new Set(nodes.map(function (n) { return n.getAttribute("data-comments-count"); })))
      .filter(Boolean);
    for (var i = 0; i < uris.length; i += 100) {
      call("POST", "/counts", { site: SITE, uris: uris.slice(i, i + 100) }).then(function (r) {
        var found = r.data.counts || {};
        nodes.forEach(function (n) {
          var uri = n.getAttribute("data-comments-count");
          if (uri in found) n.textContent = T.count(found[uri]);
        });
      });
    }
  }

  function start() {
    root = document.querySelector(opt.target || "#comments");
    if (root) {
      loadStyles();
      build();
      applyTheme();
      // The page's own stylesheets may still be loading (this script is async): look again
      // once they are in, so the widget follows the page's background.
      if (document.readyState !== "complete") window.addEventListener("load", applyTheme);
      if (window.matchMedia) matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
      load();
      setInterval(function () {
        root.querySelectorAll("time.cm-time").forEach(function (t) {
          t.textContent = relative(new Date(t.getAttribute("datetime")));
        });
      }, 60000);
    }
    counts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
