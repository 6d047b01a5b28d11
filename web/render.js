// Canvas drawing, hit testing and input for one flame graph. Layout comes from layout.js once per
// data load/zoom/resize; hover only repaints the visible rows (virtualized: the canvas is the size
// of the viewport, a spacer gives the scroll container the full depth).

import { makeRects, layout, hitTest, RECT_GROUP, RECT_ANCESTOR } from "./layout.js";
import { frameColor, binaryHues, rankBinaries } from "./colors.js";
import { shortLabel } from "./format.js";

const ROW = 18;
const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

export class FlameGraph {
  /** `scroll` is the scroll container; it receives a spacer and a sticky canvas. */
  constructor(scroll, { onHover = () => {}, onClick = () => {}, onLeave = () => {}, fixedHeight = 0 } = {}) {
    this.scroll = scroll;
    this.spacer = document.createElement("div");
    this.spacer.className = "fg-spacer";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "fg-canvas";
    // The hover outline lives on an overlay canvas so moving the pointer never repaints the graph.
    this.stage = document.createElement("div");
    this.stage.className = "fg-stage";
    this.overlay = document.createElement("canvas");
    this.overlay.className = "fg-overlay";
    this.stage.appendChild(this.canvas);
    this.stage.appendChild(this.overlay);
    this.spacer.appendChild(this.stage);
    scroll.appendChild(this.spacer);
    this.ctx = this.canvas.getContext("2d");
    this.octx = this.overlay.getContext("2d");
    this.onHover = onHover;
    this.onClick = onClick;
    this.onLeave = onLeave;
    this.fixedHeight = fixedHeight;
    this.m = null;
    this.r = null;
    this.zoom = 0;
    this.orient = "icicle";
    this.dark = false;
    this.minPx = 0.5;
    this.matched = null;
    this.marked = null;
    this.hover = -1;
    this.nodeColor = null; // per-node override (diff), else per-name colors
    this.split = false; // wall-clock: split each frame into left/right shares
    this.splitColors = ["hsl(12,80%,58%)", "hsl(210,70%,60%)"];
    this.widthPx = 0;
    this.raf = 0;
    this.hatch = null;
    this.charW = 7;
    scroll.addEventListener("scroll", () => this.requestDraw());
    this.canvas.addEventListener("mousemove", (e) => this.mouseMove(e));
    this.canvas.addEventListener("mouseleave", () => { this.setHover(-1); this.onLeave(); });
    this.canvas.addEventListener("click", (e) => {
      const h = this.hitAt(e.offsetX, e.offsetY);
      if (h) this.onClick(h, e);
    });
    if (typeof ResizeObserver !== "undefined") {
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(scroll);
    }
  }

  /** New data: precompute rectangles buffers and per-name colors, then lay out and draw. */
  setModel(m, { nodeColor = null, split = false, zoom = 0 } = {}) {
    this.m = m;
    this.r = makeRects(m);
    this.nodeColor = nodeColor;
    this.split = split;
    this.zoom = zoom;
    this.matched = null;
    this.marked = null;
    this.hover = -1;
    this.nameColors = this.computeNameColors();
    this.relayout();
  }

  computeNameColors() {
    const m = this.m;
    const out = new Array(m.names.length);
    const hues = binaryHues(rankBinaries(m));
    for (let j = 0; j < m.names.length; j++) {
      out[j] = frameColor(m.kinds[j] || "", m.binaries[j] || "", String(m.names[j]), this.dark, hues);
    }
    // The root ("total") is no binary's frame: neutral.
    if (m.n > 0 && m.nameIdx[0] === 0) out[0] = this.dark ? "hsl(220,8%,40%)" : "hsl(220,10%,82%)";
    return out;
  }

  setTheme(dark) {
    this.dark = dark;
    this.hatch = null;
    if (this.m) this.nameColors = this.computeNameColors();
    this.requestDraw();
  }

  setNodeColors(fn) { this.nodeColor = fn; this.requestDraw(); }
  setOrient(o) { this.orient = o === "flame" ? "flame" : "icicle"; this.relayout(); }
  setZoom(i) { this.zoom = i; this.relayout(); }
  setMatched(u8) { this.matched = u8; this.requestDraw(); }
  setMarked(nameSet) { this.marked = nameSet; this.requestDraw(); }
  setCulling(minPx) { this.minPx = minPx; this.relayout(); }

  resize() {
    const w = Math.floor(this.scroll.clientWidth);
    if (w !== this.widthPx) this.relayout();
    else this.requestDraw();
  }

  /** Lay out for the current zoom and width; sizes the spacer to the depth. */
  relayout() {
    if (!this.m) return;
    this.widthPx = Math.max(1, Math.floor(this.scroll.clientWidth || 800));
    layout(this.m, this.r, this.zoom, this.widthPx, this.minPx);
    this.hover = -1; // rectangle indexes changed
    const contentH = Math.max(1, this.r.levels) * ROW;
    this.spacer.style.height = `${contentH}px`;
    if (this.orient === "flame" && this.scroll.scrollTop === 0 && contentH > this.scroll.clientHeight) {
      this.scroll.scrollTop = contentH;
    }
    this.drawNow();
  }

  requestDraw() {
    if (this.raf || typeof requestAnimationFrame === "undefined") return;
    this.raf = requestAnimationFrame(() => { this.raf = 0; this.drawNow(); });
  }

  contentHeight() { return Math.max(1, this.r ? this.r.levels : 1) * ROW; }

  /** Level at a content y coordinate. */
  levelAtY(y) {
    const levels = this.r.levels;
    const row = Math.floor(y / ROW);
    return this.orient === "icicle" ? row : levels - 1 - row;
  }

  yOfLevel(l) { return this.orient === "icicle" ? l * ROW : (this.r.levels - 1 - l) * ROW; }

  hatchPattern() {
    if (this.hatch) return this.hatch;
    const c = document.createElement("canvas");
    c.width = 8; c.height = 8;
    const g = c.getContext("2d");
    g.fillStyle = this.dark ? "#555" : "#c8c8c8";
    g.fillRect(0, 0, 8, 8);
    g.strokeStyle = this.dark ? "#777" : "#9a9a9a";
    g.lineWidth = 2;
    g.beginPath(); g.moveTo(0, 8); g.lineTo(8, 0); g.moveTo(-2, 2); g.lineTo(2, -2); g.moveTo(6, 10); g.lineTo(10, 6); g.stroke();
    this.hatch = this.ctx.createPattern(c, "repeat");
    return this.hatch;
  }

  /** Paint visible rows only; returns the number of rectangles painted. */
  drawNow() {
    if (!this.m) return 0;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    const viewH = Math.min(this.fixedHeight || this.scroll.clientHeight || 400, this.contentHeight());
    const cw = Math.round(this.widthPx * dpr);
    const ch = Math.round(viewH * dpr);
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw; this.canvas.height = ch;
      this.canvas.style.width = `${this.widthPx}px`;
      this.canvas.style.height = `${viewH}px`;
    }
    this.painted = this.paint(this.ctx, dpr, this.scroll.scrollTop, viewH, true);
    return this.painted;
  }

  /**
   * The whole graph (all rows, not only the scrolled-in ones) on a new canvas, for the PNG
   * download; capped at `maxH` CSS pixels so a 10,000-deep graph cannot exhaust memory.
   */
  exportCanvas(maxH = 16000) {
    const c = document.createElement("canvas");
    if (!this.m) return c;
    const h = Math.min(this.contentHeight(), maxH);
    c.width = this.widthPx;
    c.height = h;
    const g = c.getContext("2d");
    g.fillStyle = this.dark ? "#15171a" : "#ffffff";
    g.fillRect(0, 0, c.width, c.height);
    const top = this.orient === "flame" ? Math.max(0, this.contentHeight() - h) : 0;
    this.paint(g, 1, top, h, false);
    return c;
  }

  /** Paint rows visible in [top, top + viewH) of the content onto ctx; returns rectangles painted. */
  paint(ctx, dpr, top, viewH, clear) {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (clear) ctx.clearRect(0, 0, this.widthPx, viewH);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    this.charW = ctx.measureText("abcdefghijklmnopqrstuvwxyzABCDEF").width / 32;
    const m = this.m;
    const r = this.r;
    const textColor = this.dark ? "#f2f2f2" : "#1a1a1a";
    let painted = 0;
    for (let l = 0; l < r.levels; l++) {
      const y = this.yOfLevel(l) - top;
      if (y + ROW < 0 || y > viewH) continue;
      for (let k = r.levelStart[l]; k < r.levelStart[l + 1]; k++) {
        const i = r.node[k];
        const px = r.px[k];
        // A 1 px gap separates frames wide enough to spare it, so neighbours stay distinguishable.
        const pw = r.pw[k] >= 4 ? r.pw[k] - 1 : Math.max(r.pw[k], 1);
        const kind = r.kind[k];
        const isGroup = kind === RECT_GROUP || m.isOther[i] === 1;
        let alpha = 1;
        if (this.matched && !isGroup) alpha = this.matched[i] ? 1 : 0.3;
        if (kind === RECT_ANCESTOR) alpha = Math.min(alpha, 0.6);
        ctx.globalAlpha = alpha;
        if (isGroup) {
          ctx.fillStyle = this.hatchPattern();
          ctx.fillRect(px, y, pw, ROW - 1);
        } else if (this.split && m.isDiff && m.w[i] > 0) {
          const a = (m.lt[i] / m.w[i]) * pw;
          ctx.fillStyle = this.splitColors[0];
          ctx.fillRect(px, y, a, ROW - 1);
          ctx.fillStyle = this.splitColors[1];
          ctx.fillRect(px + a, y, pw - a, ROW - 1);
        } else {
          ctx.fillStyle = this.matched && this.matched[i] ? "hsl(300,85%,62%)"
            : this.nodeColor ? this.nodeColor(i) : this.nameColors[m.nameIdx[i]];
          ctx.fillRect(px, y, pw, ROW - 1);
        }
        painted++;
        if (this.marked && !isGroup && this.marked.has(m.nameIdx[i])) {
          ctx.globalAlpha = 1;
          ctx.strokeStyle = this.dark ? "#fff" : "#000";
          ctx.lineWidth = 2;
          ctx.strokeRect(px + 1, y + 1, pw - 2, ROW - 3);
        }
        if (pw > this.charW * 3 + 6) {
          ctx.globalAlpha = Math.max(alpha, 0.6);
          ctx.fillStyle = textColor;
          ctx.fillText(this.labelOf(k), px + 3, y + ROW / 2);
        }
      }
    }
    ctx.globalAlpha = 1;
    if (clear) this.drawHover();
    return painted;
  }

  /** Outline the hovered rectangle on the overlay (cheap: the graph itself is not repainted). */
  drawHover() {
    const o = this.overlay;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    if (o.width !== this.canvas.width || o.height !== this.canvas.height) {
      o.width = this.canvas.width; o.height = this.canvas.height;
      o.style.width = this.canvas.style.width; o.style.height = this.canvas.style.height;
    }
    const g = this.octx;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, o.width, o.height);
    const r = this.r;
    if (!this.m || this.hover < 0 || this.hover >= r.count) return;
    const k = this.hover;
    const y = this.yOfLevel(this.m.level[r.node[k]]) - this.scroll.scrollTop;
    g.strokeStyle = this.dark ? "#fff" : "#000";
    g.lineWidth = 1.5;
    g.strokeRect(r.px[k] + 0.75, y + 0.75, Math.max(r.pw[k], 1) - 1.5, ROW - 2.5);
  }

  /** Hit at canvas-relative coordinates: {rect, node, group, count, total} or null. */
  hitAt(cx, cy) {
    if (!this.m || !this.r) return null;
    const l = this.levelAtY(cy + this.scroll.scrollTop);
    const k = hitTest(this.r, l, cx);
    if (k < 0) return null;
    const i = this.r.node[k];
    return {
      rect: k,
      node: i,
      group: this.r.kind[k] === RECT_GROUP,
      ancestor: this.r.kind[k] === RECT_ANCESTOR,
      count: this.r.groupCount[k],
      total: this.r.kind[k] === RECT_GROUP ? this.r.groupTotal[k] : this.m.w[i],
    };
  }

  setHover(k) {
    if (k === this.hover) return;
    this.hover = k;
    this.drawHover();
  }

  mouseMove(e) {
    const h = this.hitAt(e.offsetX, e.offsetY);
    this.setHover(h ? h.rect : -1);
    if (h) this.onHover(h, e);
    else this.onLeave();
  }

  /** The text drawn on rectangle k (shortened to its width, function name kept; "" when too narrow). */
  labelOf(k) {
    const r = this.r;
    const pw = r.pw[k];
    if (!(pw > this.charW * 3 + 6)) return "";
    const label = r.kind[k] === RECT_GROUP ? `${r.groupCount[k]} small frames` : String(this.m.names[this.m.nameIdx[r.node[k]]]);
    return shortLabel(label, Math.floor((pw - 6) / this.charW));
  }

  /** Pixel-space center of the rectangle drawn for node i (for tests and keyboard), or null. */
  centerOf(i) {
    const r = this.r;
    for (let k = 0; k < r.count; k++) {
      if (r.node[k] === i && r.kind[k] !== RECT_GROUP) {
        const y = this.yOfLevel(this.m.level[i]) - this.scroll.scrollTop;
        return { x: r.px[k] + Math.max(r.pw[k], 1) / 2, y: y + ROW / 2 };
      }
    }
    return null;
  }
}

export const ROW_HEIGHT = ROW;
