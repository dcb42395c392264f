// Clicking an [n] marker in an answer opens that source in the Sources panel, scrolls to it and flashes it.
// One delegated listener: Gradio re-renders the chat, so per-link handlers would be lost.
document.addEventListener(
  "click",
  (event) => {
    const link = event.target.closest && event.target.closest('a[href^="#src-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const root = document.querySelector("gradio-app")?.shadowRoot || document;
    const target = root.getElementById(link.getAttribute("href").slice(1));
    if (!target) return;
    for (let node = target; node; node = node.parentElement?.closest("details")) node.open = true;
    target.scrollIntoView({ behavior: "smooth", block: "center" });
    target.classList.remove("flash");
    void target.offsetWidth; // restart the animation when the same source is clicked twice
    target.classList.add("flash");
  },
  true,
);

// Opening "Read the whole document" scrolls the highlighted quote into the middle of the reader.
document.addEventListener(
  "toggle",
  (event) => {
    const details = event.target;
    if (!details.open || !details.classList?.contains("doc")) return;
    const mark = details.querySelector("mark");
    const box = details.querySelector(".doc-text");
    if (mark && box) box.scrollTop = mark.offsetTop - box.offsetTop - box.clientHeight / 3;
  },
  true,
);
