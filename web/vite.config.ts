// The app is built into the Python package, so `pip install pigeon` serves it without node.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../src/pigeon/web/static",
    emptyOutDir: true,
    // The strict CSP allows no inline script: keep the preload helper out of the HTML.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
