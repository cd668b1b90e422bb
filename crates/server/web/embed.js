// Runs in the watch page's <head>, before anything is drawn: opened with `?embed` (the embed
// snippet's URL) or framed by another page (a snippet written before `?embed` existed), the
// page is the player alone, filling its frame (`html.embed` in agora.css).
"use strict";
if (new URLSearchParams(location.search).has("embed") || window.top !== window.self) {
  document.documentElement.classList.add("embed");
}
