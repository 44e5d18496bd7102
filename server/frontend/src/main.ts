// Entry point: styles, the shell and the four pages.
import "./styles.css";

import { App } from "./app";
import { adminPage } from "./pages/admin";
import { dataPage } from "./pages/data";
import { itemPage } from "./pages/item";
import { overviewPage } from "./pages/overview";

const host = document.getElementById("app");
if (host) {
  new App({ overview: overviewPage, item: itemPage, data: dataPage, admin: adminPage }).start(host);
}
