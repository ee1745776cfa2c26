#!/bin/sh
# demo.sh AUTHSCORE - check every message of examples/messages.txt offline (zone.db) and print a verdict table.
bin=${1:-build/authscore}
dir=$(dirname "$0")
printf '%-18s %-9s %-9s %-9s %-18s %-11s %6s  %s\n' MESSAGE SPF DKIM DMARC "POLICY/DISPOSITION" ACTION SCORE "WHAT IT SHOWS"
grep -v '^#' "$dir/messages.txt" | while read -r file ip helo from what; do
    [ -n "$file" ] || continue
    out=$("$bin" check --zone "$dir/zone.db" --authserv-id mx.receiver.test \
          --ip "$ip" --helo "$helo" --mail-from "$from" "$dir/messages/$file") || { echo "demo: $file: authscore failed" >&2; exit 1; }
    spf=$(echo "$out" | awk '$1 == "spf:" { print $2; exit }')
    dkim=$(echo "$out" | awk '$1 == "dkim:" { printf "%s%s", sep, $2; sep = "," }')
    dmarc=$(echo "$out" | awk '$1 == "dmarc:" { print $2; exit }')
    pol=$(echo "$out" | awk '$1 == "dmarc:" { for (i = 3; i <= NF; i++) { if ($i ~ /^policy=/) p = substr($i, 8); if ($i ~ /^disposition=/) d = substr($i, 13) } print p "/" d; exit }')
    action=$(echo "$out" | awk '$1 == "action:" { print $2; exit }')
    score=$(echo "$out" | awk '$1 == "action:" { print $4; exit }')
    printf '%-18s %-9s %-9s %-9s %-18s %-11s %6s  %s\n' "$file" "$spf" "$dkim" "$dmarc" "$pol" "$action" "$score" "$what"
done
echo
echo "The spoof in full (symbols, SMTP answer, Authentication-Results):"
"$bin" check --zone "$dir/zone.db" --authserv-id mx.receiver.test --ip 203.0.113.66 \
    --helo mail.evil.test --mail-from attacker@evil.test "$dir/messages/spoof.eml" | sed -n '/^symbol:/,$s/^/  /p'
