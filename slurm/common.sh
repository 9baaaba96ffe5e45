# Shared by every sbatch script in slurm/: environment, a banner, and the preemption protocol.
# Sourced as "$SKY_DISTILL_REPO/slurm/common.sh" (SLURM runs a spooled copy of the batch
# script, so a script cannot find its neighbours from its own path; slurm/pipeline.py exports
# SKY_DISTILL_REPO, and by hand it defaults to the submission directory).
#
# Preemption protocol (see README "Running on a SLURM cluster"):
#   - scripts ask for `--signal=B:USR1@<seconds>`: only this batch shell is warned before the
#     time limit, and it decides what the step does;
#   - `resume` steps (generate, eval, verify, ...) lose nothing when killed (append-only,
#     per-sample resume), so on the warning the job requeues itself at once;
#   - `checkpoint` steps (train) get the warning forwarded (srun passes USR1 to every rank),
#     save their current step and exit with SKY_REQUEUE_EXIT (85); the job then requeues itself
#     and the next run resumes from that checkpoint;
#   - a plain `scancel` (SIGTERM to everything, this shell included) is never turned into a requeue.

SKY_REQUEUE_EXIT=85   # sky_distill.train.preemption.REQUEUE_EXIT_CODE

sky_log() {
  echo "[$(date '+%F %T')] sky-distill slurm: $*" >&2
}

sky_setup() {
  if [ -n "${SKY_DISTILL_VENV:-}" ]; then
    # shellcheck disable=SC1091
    source "$SKY_DISTILL_VENV/bin/activate"
  fi
  if ! command -v sky-distill >/dev/null 2>&1; then
    sky_log "error: sky-distill is not on PATH; activate its environment before sbatch, or set SKY_DISTILL_VENV"
    exit 2
  fi
  # CPU threads per process follow the allocation, not the machine's core count.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
  local task=""
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && task=" array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  sky_log "job ${SLURM_JOB_ID:-none}${task} (${SLURM_JOB_NAME:-}) on ${SLURM_JOB_NODELIST:-$(hostname)}," \
    "restart ${SLURM_RESTART_COUNT:-0}, in $(pwd)"
}

# The Hydra output folder of this job (instead of a timestamp): logs/<stage>/slurm-<job>[/rank<r>].
sky_hydra_dir() {
  local stage=$1 suffix=${2:-}
  local job=${SLURM_JOB_ID:-local}
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && job="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  echo "hydra.run.dir=\${paths.run_dir}/logs/${stage}/slurm-${job}${suffix}"
}

sky_requeue() {
  sky_log "requeueing job ${SLURM_JOB_ID} ($*)"
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    sky_log "error: could not requeue job ${SLURM_JOB_ID} (submitted with --no-requeue, or the cluster forbids it)"
    return 1
  fi
}

_sky_warned() {
  if [ "$SKY_POLICY" = resume ]; then
    sky_log "time limit near: this step resumes where it stopped, so the job goes back to the queue now"
    if sky_requeue "resume after the time-limit warning"; then
      kill -TERM "$SKY_STEP_PID" 2>/dev/null || true   # the requeue ends it too; do not wait for that
      exit 0
    fi
    return   # not requeued: the step runs on until the time limit (re-submit the job to resume)
  fi
  sky_log "time limit near: asking the step to checkpoint (USR1)"
  kill -USR1 "$SKY_STEP_PID" 2>/dev/null || true
}

# sky_run resume|checkpoint COMMAND...: run the job's step and apply the preemption protocol.
# Exits with the step's status, except that a checkpointed step (status 85) is requeued.
sky_run() {
  SKY_POLICY=$1
  shift
  "$@" &
  SKY_STEP_PID=$!
  trap _sky_warned USR1
  local status=0
  while true; do
    wait "$SKY_STEP_PID" && status=0 || status=$?
    # `wait` also returns (status > 128) when the trap ran while the step still runs.
    if [ "$status" -gt 128 ] && kill -0 "$SKY_STEP_PID" 2>/dev/null; then
      continue
    fi
    break
  done
  trap - USR1
  if [ "$status" -eq "$SKY_REQUEUE_EXIT" ]; then
    # Not requeued, the job fails (its dependants must not start on a half-trained model).
    sky_requeue "the step checkpointed and asked to be resumed" || exit "$status"
    exit 0
  fi
  if [ "$status" -ne 0 ]; then
    sky_log "step failed with status $status"
  fi
  return "$status"
}
