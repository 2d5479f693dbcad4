"""Turns the parts' JSON results into PASS/FAIL lines and numbers. Exit 1 on any FAIL.
Usage: summary.py WORK PART...   (reads WORK/PART.json; a missing one is a FAIL)"""

import json
import os
import sys

work, parts = sys.argv[1], sys.argv[2:]
fails = 0


def check(ok, what, detail=""):
    global fails
    fails += not ok
    print(f"  {'PASS' if ok else 'FAIL'}  {what}" + (f"  [{detail}]" if detail and not ok else ""))


for part in parts:
    try:
        r = json.load(open(os.path.join(work, f"{part}.json")))
    except Exception as e:
        print(f"{part}:")
        check(False, f"{part} produced results", str(e))
        continue
    if part == "crash":
        print(f"crashes (seed {r['seed']}): {r['uploads']} uploads {r['kinds']}, SIGKILLs {r['kills']} "
              f"in {r['chaos_s']}s; first attempts failed {r['first_attempt_failed']}; "
              f"after restart: {r['after_restart']}")
        if r.get("rsync_partial_too_big"):
            print(f"  NOTE  interrupted rsync kept more than its source (rsync re-wrote its buffer on "
                  f"SIGINT): {r['rsync_partial_too_big']}; bad-signature verdicts on them: "
                  f"{r.get('verdicts_on_rsync_garbled_partials')}")
        check(r["n_resume_failed"] == 0, "cut-off uploads resume with their own client",
              r["resume_failed"])
        check(r["n_not_published_once"] == 0 and not r["wrong_bytes"] and not r["extra_files"],
              "every upload published exactly once, with its bytes",
              f"{r['not_published_once']} {r['wrong_bytes']} {r['extra_files']}")
        check(not r["half_published"], "nothing half published", r["half_published"])
        check(not r["false_verdicts"] and not r["quarantine"], "no verdict recorded by a crash",
              f"{r['false_verdicts']} {r['quarantine']}")
        check(not r["spool_left"], f"spool empty afterwards (but {r['client_temps_left']} temporaries of killed rsyncs)", r["spool_left"])
        check(not r["orphans"] and not r["missing_objects"] and not r["corrupt_objects"]
              and r["store_tmp_after_gc"] == 0,
              "store: no orphans, nothing missing or corrupt",
              f"orphans {r['orphans']} missing {r['missing_objects']} corrupt {r['corrupt_objects']} "
              f"tmp {r['store_tmp_after_gc']}")
        check(r["integrity"] == "ok", "catalog PRAGMA integrity_check", r["integrity"])
    elif part == "load":
        print(f"load: {r['users']} uids x {r['uploads'] // max(r['users'], 1)} uploads of "
              f"{r['size_kib']} KiB + readers: all written in {r['written_s']}s, published in "
              f"{r['published_s']}s -> {r['uploads_per_s']} uploads/s, {r['mib_per_s']} MiB/s; "
              f"close(2) p50 {r['close_p50_s']}s p99 {r['close_p99_s']}s max {r['close_max_s']}s "
              f"(closes completing a pair: p50 {r['sig_close_p50_s']}s p99 {r['sig_close_p99_s']}s); "
              f"reader ops {r['reads']['ops']}, slowest {round(r['reads']['max_s'], 3)}s")
        check(r["n_missing"] == 0 and not r["wrong_bytes"] and not r["rejected"],
              "every upload published", f"missing {r['missing']} wrong {r['wrong_bytes']} "
              f"rejected {r['rejected']}")
        check(r["n_leaks"] == 0, "no uid sees another's in-flight files", r["leaks"])
        check(r["late_closes"] == 0 and r["no_verdict_in_time"] == 0 and r["reads"]["late"] == 0
              and r["n_upload_errors"] == 0 and not r["reads"]["errors"],
              "no request waits past its deadline (close_wait, 10 s reads), no errors",
              f"late closes {r['late_closes']}, verdicts missed {r['no_verdict_in_time']}, late reads "
              f"{r['reads']['late']}, errors {r['upload_errors']} {r['reads']['errors']}")
        check(r["integrity"] == "ok", "catalog PRAGMA integrity_check", r["integrity"])
    elif part == "disk":
        print(f"disk full: spool write errno {r['spool_full_errno']}, cut-off upload kept "
              f"{r['cutoff_kept_bytes']} bytes; retries logged {r['retries_logged']}")
        check(r["spool_full_errno"] == "ENOSPC", "spool full: the writer gets ENOSPC",
              r["spool_full_errno"])
        check(r["inflight_intact"] and r["cutoff_prefix_intact"] and r["published_intact"],
              "spool full: nothing already written is lost or corrupted")
        check(all(r["resumed_published"].values()) and
              all(v == [0, 0] for k, v in r.items() if k.startswith("resume_")),
              "after space is freed the upload resumes and is published",
              f"{r['resumed_published']}")
        for k, what in (("store_full", "store full"), ("catalog_full", "catalog full")):
            s = r[k]
            check(r[f"{k}_cp_rc"] == 0 and not s["published_while_full"] and s["rejected"] == 0
                  and s["quarantined"] == 0 and s["still_in_spool"],
                  f"{what}: the upload waits (no verdict, nothing quarantined)", s)
            check(s["published_after_free"], f"{what}: published once space is freed", s)
        check(not r["rejected"] and r["daemon_alive"], "no rejection; repofsd still running",
              r["rejected"])
        check(not r["orphans_after_gc"] and not r["missing_objects"],
              "store consistent with the catalog", f"{r['orphans_after_gc']} {r['missing_objects']}")
        check(r["integrity"] == "ok", "catalog PRAGMA integrity_check", r["integrity"])
print("RESULT:", "PASS" if fails == 0 else f"FAIL ({fails})")
sys.exit(1 if fails else 0)
