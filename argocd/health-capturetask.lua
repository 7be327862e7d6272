-- ArgoCD health check for otus.io/CaptureTask.
-- Install: argocd-cm data key `resource.customizations.health.otus.io_CaptureTask` (see argocd-cm-patch.yaml).
-- Maps the operator's status onto ArgoCD's health:
--   Suspended phase                              -> Suspended
--   Failed phase, or Degraded=True               -> Degraded
--   Succeeded phase (duration elapsed)           -> Healthy
--   Ready=True for the current generation        -> Healthy
--   anything else (no status yet, agents coming) -> Progressing
local hs = {}
local function condition(obj, ctype)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
local ready = condition(obj, "Ready")
local degraded = condition(obj, "Degraded")

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Capture suspended"
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or "Capture failed"
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.reason .. ": " .. (degraded.message or "")
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Capture completed"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Agents capturing"
  return hs
end
hs.status = "Progressing"
hs.message = (ready and ready.message) or ("Phase " .. phase)
return hs
