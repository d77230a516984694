#!/bin/bash
# A three-stage pipeline glued with dependencies, the way many labs write it:
# preprocess, then train (only if preprocessing succeeded), then report
# (whatever happened to training).
set -euo pipefail
cd "$(dirname "$0")"

prep=$(sbatch --parsable --job-name=prep --output=prep-%j.out --wrap 'echo prepared > data.txt')
train=$(sbatch --parsable --job-name=train --output=train-%j.out \
        --dependency=afterok:"$prep" --wrap 'wc -c < data.txt')
report=$(sbatch --parsable --job-name=report --output=report-%j.out \
        --dependency=afterany:"$train" --wrap 'echo "training ended"')
echo "$prep $train $report"
