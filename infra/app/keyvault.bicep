// Key Vault (RBAC) for the secrets the app settings reference: the ingest key, the D365 app registration's client
// secret (only when AUTH_MODE=msal) and the SMTP password of alert e-mails (only when given). The app reads them
// through Key Vault references with its identity (Key Vault Secrets User); nothing secret is in an app setting.
// Flex Consumption cannot resolve references to a vault behind a firewall, so public network access stays on
// with RBAC as the gate, unless privateNetworking (Elastic Premium only) puts the vault behind its private endpoint:
// the app then resolves the references through its VNet integration (vnetRouteAllEnabled in function-app.bicep).
param name string
param location string
param tags object = {}
param appPrincipalId string
@description('Object id of who runs azd, to read and rotate secrets (empty: no such assignment)')
param operatorPrincipalId string = ''
@description('Private networking (network.bicep): public network access off, reached through its private endpoint only')
param privateNetworking bool = false
@secure()
param ingestKey string
@secure()
param clientSecret string = ''
@secure()
param alertSmtpPassword string = ''

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource ingestKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'ingest-key'
  properties: {
    value: ingestKey
  }
}

resource clientSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(clientSecret)) {
  parent: vault
  name: 'client-secret'
  properties: {
    value: clientSecret
  }
}

resource smtpPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertSmtpPassword)) {
  parent: vault
  name: 'alert-smtp-password'
  properties: {
    value: alertSmtpPassword
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: operatorPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
