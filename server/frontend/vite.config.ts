// Deterministic build: the same sources and lock give byte-identical files in dist/ (CI checks it).
// Content hashes only, no sourcemaps, no timestamps, one JS and one CSS file, relative asset URLs.
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a running appliance server (`make demo` listens on :8080).
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const api = env.DASHBOARD_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "./",
  publicDir: false,
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2020",
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
    chunkSizeWarningLimit: 200,
    assetsInlineLimit: 0,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/api": { target: api, changeOrigin: false },
      "/health": { target: api, changeOrigin: false },
    },
  },
});
