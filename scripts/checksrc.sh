#!/bin/sh
# checksrc: functions src/ must not call, in the spirit of curl's checksrc.
#
# Every byte tingshuo parses comes from strangers, so the functions that
# cannot say how much they wrote or read are out:
#   sprintf vsprintf strcpy strcat strncat stpcpy gets   unbounded writes:
#                                                        snprintf, or memcpy
#                                                        after a length check
#   atoi atol atoll atof                                 undefined on overflow,
#                                                        silent on garbage
#   sscanf vsscanf scanf fscanf                          the same for %d, %u,
#                                                        %ld; banned whole, as
#                                                        one rule is easier to
#                                                        keep than "only %s"
#   strtok                                               hidden state
# Numbers from outside go through core/num.h (num_parse_int and friends).
# Comments and string literals are not checked. Prints each offending line
# and exits 1.
#
#   scripts/checksrc.sh [DIR]      (DIR: from the repository root; src/ by default)
set -eu
cd "$(dirname "$0")/.."
dir=${1:-src}
banned='sprintf|vsprintf|strcpy|strcat|strncat|stpcpy|gets|atoi|atol|atoll|atof|sscanf|vsscanf|scanf|fscanf|strtok'
status=0
for f in $(find "$dir" -name '*.[ch]' | sort); do
  # Blank out /* ... */ and // comments and string literals, keeping line numbers.
  hits=$(awk -v banned="$banned" '
    {
      line = $0; out = ""
      while (length(line) > 0) {
        if (incomment) {
          i = index(line, "*/")
          if (i == 0) { line = ""; break }
          line = substr(line, i + 2); incomment = 0; continue
        }
        c = substr(line, 1, 1); two = substr(line, 1, 2)
        if (two == "/*") { incomment = 1; line = substr(line, 3); out = out " "; continue }
        if (two == "//") break
        if (c == "\"") {
          if (match(substr(line, 2), /^([^"\\]|\\.)*"/)) line = substr(line, RLENGTH + 2)
          else line = ""
          out = out "\"\""; continue
        }
        out = out c; line = substr(line, 2)
      }
      if (match(out, "(^|[^A-Za-z0-9_])(" banned ")[ \t]*\\(")) print FILENAME ":" NR ": " $0
    }' "$f")
  if [ -n "$hits" ]; then
    printf '%s\n' "$hits"
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "checksrc: banned functions above (see the head of scripts/checksrc.sh for what to use)" >&2
fi
exit "$status"
