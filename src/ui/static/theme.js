// Applies the theme chosen in this browser before the page paints: a classic script in <head>,
// so it runs before the body is drawn (the module script runs later). "auto" follows the system.
(() => {
  try {
    const saved = localStorage.getItem("pgwake.theme");
    if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  } catch {
    // Storage refused (a private window's settings): the system's theme applies.
  }
})();
