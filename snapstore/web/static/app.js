// Live progress of a restore job: polls its JSON twice a second until it is finished.
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box) { return; }
  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
  }
  function poll() {
    fetch(box.dataset.url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (job) {
      document.getElementById("job-progress").max = job.total_bytes || 1;
      document.getElementById("job-progress").value = job.state === "running" ? job.bytes : (job.total_bytes || 1);
      document.getElementById("job-state").textContent = job.state;
      document.getElementById("job-files").textContent = job.files;
      document.getElementById("job-bytes").textContent = human(job.bytes);
      document.getElementById("job-current").textContent = job.current;
      document.getElementById("job-message").textContent = job.message + (job.errors.length ? " (" + job.errors.join("; ") + ")" : "");
      if (job.state === "running") { setTimeout(poll, 500); }
    }).catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
