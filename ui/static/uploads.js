// Gradio's own upload errors (e.g. "File(s) exceed the maximum allowed size: <name>") render the file name as HTML,
// so a file named `<img src=\\host\x>` would make the browser fetch a remote URL. Before Gradio sees a picked or
// dropped file, any name with markup characters is replaced by a copy under a plain name (the server sanitises
// names again; this only keeps markup out of the page).
(() => {
  const UNSAFE = /[<>&"'`]/g;
  const isUnsafe = (file) => /[<>&"'`]/.test(file.name);
  const renamed = (files) => {
    const transfer = new DataTransfer();
    for (const file of files) {
      transfer.items.add(isUnsafe(file) ? new File([file], file.name.replace(UNSAFE, "_"), { type: file.type, lastModified: file.lastModified }) : file);
    }
    return transfer.files;
  };
  document.addEventListener(
    "change",
    (event) => {
      const input = event.composedPath()[0];
      if (input instanceof HTMLInputElement && input.type === "file" && [...(input.files || [])].some(isUnsafe)) {
        input.files = renamed(input.files);
      }
    },
    true,
  );
  document.addEventListener(
    "drop",
    (event) => {
      const files = event.dataTransfer?.files;
      if (!files || ![...files].some(isUnsafe)) return;
      const target = event.composedPath()[0];
      const block = target instanceof Element ? target.closest(".block") : null; // the component's wrapper
      const input = block && block.querySelector('input[type="file"]');
      if (!input) return;
      // The drop's file list is read-only: cancel it, and hand the renamed files to the component's own input.
      event.preventDefault();
      event.stopImmediatePropagation();
      input.files = renamed(files);
      input.dispatchEvent(new Event("change", { bubbles: true }));
    },
    true,
  );
})();
