// A small SVG sparkline: a line and a faded area under it.

const NS = "http://www.w3.org/2000/svg";
const W = 120;
const H = 36;

let gradients = 0;

export class Sparkline {
  readonly svg: SVGSVGElement;
  private readonly line: SVGPathElement;
  private readonly area: SVGPathElement;

  constructor() {
    const id = `spark-grad-${gradients++}`;
    this.svg = document.createElementNS(NS, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("aria-hidden", "true");
    this.svg.classList.add("spark");
    const defs = document.createElementNS(NS, "defs");
    const grad = document.createElementNS(NS, "linearGradient");
    grad.id = id;
    grad.setAttribute("x1", "0");
    grad.setAttribute("x2", "0");
    grad.setAttribute("y1", "0");
    grad.setAttribute("y2", "1");
    for (const [offset, opacity] of [
      ["0", "0.35"],
      ["1", "0"],
    ]) {
      const stop = document.createElementNS(NS, "stop");
      stop.setAttribute("offset", offset);
      stop.setAttribute("stop-color", "currentColor");
      stop.setAttribute("stop-opacity", opacity);
      grad.append(stop);
    }
    defs.append(grad);
    this.area = document.createElementNS(NS, "path");
    this.area.setAttribute("fill", `url(#${id})`);
    this.line = document.createElementNS(NS, "path");
    this.line.setAttribute("fill", "none");
    this.line.setAttribute("stroke", "currentColor");
    this.line.setAttribute("stroke-width", "1.5");
    this.line.setAttribute("vector-effect", "non-scaling-stroke");
    this.line.setAttribute("stroke-linejoin", "round");
    this.svg.append(defs, this.area, this.line);
    this.draw([]);
  }

  draw(values: number[]): void {
    if (values.length === 0) {
      this.line.setAttribute("d", `M0 ${H / 2} H${W}`);
      this.line.setAttribute("stroke-dasharray", "3 3");
      this.area.setAttribute("d", "");
      return;
    }
    this.line.removeAttribute("stroke-dasharray");
    const pts = values.length === 1 ? [values[0], values[0]] : values;
    let min = Math.min(...pts);
    let max = Math.max(...pts);
    if (max === min) {
      min -= 1;
      max += 1;
    }
    const pad = 3;
    const x = (i: number) => (i / (pts.length - 1)) * W;
    const y = (v: number) => pad + (1 - (v - min) / (max - min)) * (H - 2 * pad);
    const d = pts.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)} ${y(v).toFixed(1)}`).join("");
    this.line.setAttribute("d", d);
    this.area.setAttribute("d", `${d}L${W} ${H}L0 ${H}Z`);
  }
}
