# Test-summary bookkeeping shared by scripts/test.sh and scripts/test-cassert.sh
# (sourced, not run): one line per suite, and counts of tests passed / failed.
# The runners end with print_summary and `exit $status`.
summary=(); total_pass=0; total_fail=0; status=0

record() {  # record SUITE RESULT PASSED FAILED [NOTE]
  summary+=("$(printf '%-10s %-5s %s' "$1:" "$2" "${5-}")")
  total_pass=$((total_pass + $3)); total_fail=$((total_fail + $4))
  [ "$2" != FAIL ] || status=1
}

# Counts from pg_regress's closing line: "All N tests passed." / "M of N tests failed."
# (PostgreSQL 16 and later print it as a TAP comment, after "# ").
regress_counts() {  # regress_counts LOG RC -> "passed failed"
  local line n m
  line=$(grep -E '^(# )? *(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' "$1" 2>/dev/null | tail -n1 || true)
  if [[ $line =~ All\ ([0-9]+)\ tests ]]; then echo "${BASH_REMATCH[1]} 0"
  elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests ]]; then
    m=${BASH_REMATCH[1]}; n=${BASH_REMATCH[2]}; echo "$((n - m)) $m"
  elif [ "$2" -eq 0 ]; then echo "0 0"
  else echo "0 1"; fi   # pg_regress died before its summary
}

print_summary() {  # the last line is what CI and people read
  printf '%s\n' "${summary[@]}"
  echo "tests: $total_pass passed, $total_fail failed"
}
