-- Argo CD resource health of the mooring.dev kinds (ModelDeployment, DriftMonitor,
-- ChatService): one script for all three, since they share the kstatus conventions.
-- Argo CD sets the global `obj` (the live object) and expects {status=..., message=...}.
--
--   1. observedGeneration behind metadata.generation (or no status)  -> Progressing
--   2. Stalled=True                                                   -> Degraded
--   3. Degraded=True (e.g. RolledBack, RolloutFailed)                 -> Degraded
--   4. Reconciling=True                                               -> Progressing
--   5. no Ready condition                                             -> Progressing
--   6. Ready=True                                                     -> Healthy
--   7. Ready=False/Unknown with a transient reason (TRANSIENT below)  -> Progressing
--      Ready=False with any other reason (InvalidModel, SecretNotFound,
--      AliasNotFound, ReconcileError, ...)                            -> Degraded
-- An explicit failure (2, 3) wins over work in progress (4). The message is the deciding
-- condition's ("Reason: message"); the Ready condition's in cases 6 and 7.
-- Tested by operator/tests/argocd_health.rs.

-- Ready=False reasons that only mean "not yet": the operator is waiting for pods, a
-- rollout or a registry that will come back.
local TRANSIENT = {
  ReplicasNotReady = true,
  RollingOut = true,
  Progressing = true,
  Reconciling = true,
  NoVersion = true,
  RegistryUnreachable = true,
  BackendUnreachable = true,
  Pending = true,
}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  return message
end

local function health(obj)
  local status = obj.status
  local generation = obj.metadata and obj.metadata.generation
  if status == nil then
    return { status = "Progressing", message = "Waiting for the operator to reconcile" }
  end
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return {
      status = "Progressing",
      message = "Waiting for the operator to observe generation " .. tostring(generation),
    }
  end
  for _, ctype in ipairs({ "Stalled", "Degraded" }) do
    local c = condition(status, ctype)
    if c ~= nil and c.status == "True" then
      return { status = "Degraded", message = describe(c) }
    end
  end
  local reconciling = condition(status, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    return { status = "Progressing", message = describe(reconciling) }
  end
  local ready = condition(status, "Ready")
  if ready == nil then
    return { status = "Progressing", message = "Waiting for the Ready condition" }
  end
  if ready.status == "True" then
    return { status = "Healthy", message = ready.message or "" }
  end
  if ready.status == "False" and not TRANSIENT[ready.reason or ""] then
    return { status = "Degraded", message = describe(ready) }
  end
  return { status = "Progressing", message = describe(ready) }
end

return health(obj)
