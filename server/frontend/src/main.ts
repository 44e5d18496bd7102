// Entry point: styles, the shell and the pages.
import "./styles.css";

import { App } from "./app";
import { adminPage } from "./pages/admin";
import { dataPage } from "./pages/data";
import { itemPage } from "./pages/item";
import { itemsPage } from "./pages/items";
import { overviewPage } from "./pages/overview";
import { revisionsPage } from "./pages/revisions";

const host = document.getElementById("app");
if (host) {
  new App({ overview: overviewPage, items: itemsPage, item: itemPage, revisions: revisionsPage, data: dataPage, admin: adminPage }).start(host);
}
