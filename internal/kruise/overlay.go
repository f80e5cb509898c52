package kruise

import (
	"strings"
	"time"
)

// readyTimeout bounds the manager becoming ready after an install.
const readyTimeout = 3 * time.Minute

// overlay is nodrop's kustomization over the module's config/default,
// for an offline cluster:
//   - the manager image is nodrop's, never pulled;
//   - no kruise-daemon (SidecarSet does not need it; the image has only
//     the manager), so KruiseDaemon is off;
//   - the webhook port is the one the code and the Service use (9876);
//   - emptyDirs for /tmp (webhook certificates) and /log (the deletion
//     protection logger): a scratch image has neither;
//   - the pod webhooks' failurePolicy is Ignore, as in the Helm chart, so
//     a stopped manager never blocks pods in kube-system. The price:
//     pods created while it is down get no sidecars, which is why nodrop
//     checks every SidecarSet pod for its injected containers.
const overlayTemplate = `resources:
- ../config/default
images:
- name: controller
  newName: IMAGE_NAME
  newTag: IMAGE_TAG
patches:
- target: {kind: DaemonSet, name: kruise-daemon}
  patch: |-
    $patch: delete
    apiVersion: apps/v1
    kind: DaemonSet
    metadata: {name: kruise-daemon, namespace: kruise-system}
- target: {kind: Deployment, name: kruise-controller-manager}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 1
    - op: replace
      path: /spec/template/spec/containers/0/imagePullPolicy
      value: Never
    - op: replace
      path: /spec/template/spec/containers/0/args
      value:
      - --enable-leader-election
      - --logtostderr=true
      - --v=2
      - --feature-gates=KruiseDaemon=false
    - op: replace
      path: /spec/template/spec/containers/0/env
      value:
      - name: POD_NAMESPACE
        valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
      - name: WEBHOOK_PORT
        value: "9876"
    - op: replace
      path: /spec/template/spec/containers/0/ports
      value:
      - {containerPort: 9876, name: webhook-server, protocol: TCP}
    - op: replace
      path: /spec/template/spec/containers/0/readinessProbe
      value: {httpGet: {path: /readyz, port: 8000}}
    - op: add
      path: /spec/template/spec/volumes/-
      value: {name: tmp, emptyDir: {}}
    - op: add
      path: /spec/template/spec/containers/0/volumeMounts/-
      value: {name: tmp, mountPath: /tmp}
    - op: add
      path: /spec/template/spec/volumes/-
      value: {name: log, emptyDir: {}}
    - op: add
      path: /spec/template/spec/containers/0/volumeMounts/-
      value: {name: log, mountPath: /log}
- target: {kind: MutatingWebhookConfiguration, name: kruise-mutating-webhook-configuration}
  patch: |-
    - op: test
      path: /webhooks/0/name
      value: mpod.kb.io
    - op: replace
      path: /webhooks/0/failurePolicy
      value: Ignore
- target: {kind: ValidatingWebhookConfiguration, name: kruise-validating-webhook-configuration}
  patch: |-
    - op: test
      path: /webhooks/7/name
      value: vpod.kb.io
    - op: replace
      path: /webhooks/7/failurePolicy
      value: Ignore
    - op: test
      path: /webhooks/8/name
      value: vpodeviction.kb.io
    - op: replace
      path: /webhooks/8/failurePolicy
      value: Ignore
`

func overlay(image string) string {
	i := strings.LastIndex(image, ":")
	return strings.NewReplacer("IMAGE_NAME", image[:i], "IMAGE_TAG", image[i+1:]).Replace(overlayTemplate)
}
